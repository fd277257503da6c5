"""Device templates: brand and model → role and profile settings, shipped as data files
(`templates/*.yaml`), so a known device is `template: NAME` in `edge.yaml` plus the few
settings only its owner knows (an address, a serial number).

A device entry with `template:` takes the template's role (unless it names one) and its
profile settings, with the entry's own `profile:` settings written over them; the result
is checked like any other entry.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from edge_controller.market.checks import Problem, ValidationError


@dataclass(frozen=True)
class Template:
    """One catalogue entry."""

    name: str
    brand: str
    model: str
    role: str
    profile: Mapping[str, Any]


@functools.cache
def catalogue() -> dict[str, Template]:
    """Every template shipped with the edge controller, by name."""
    found: dict[str, Template] = {}
    folder = resources.files("edge_controller.devices") / "templates"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for item in yaml.safe_load(entry.read_text()) or []:
            template = Template(
                item["name"], item["brand"], item["model"], item["role"], item["profile"]
            )
            found[template.name] = template
    return found


def expand_templates(document: Any) -> Any:
    """`document` with each `devices[i]` that names a template expanded; raises
    ValidationError naming each unknown template with its path."""
    if not isinstance(document, Mapping) or not isinstance(document.get("devices"), list):
        return document
    known = catalogue()
    problems: list[Problem] = []
    devices: list[Any] = []
    for i, entry in enumerate(document["devices"]):
        if not isinstance(entry, Mapping) or "template" not in entry:
            devices.append(entry)
            continue
        name = entry["template"]
        template = known.get(name) if isinstance(name, str) else None
        if template is None:
            problems.append(
                Problem(
                    f"devices[{i}].template",
                    f"no template named {name!r}; `energy-p2p-edge devices templates` lists them",
                )
            )
            continue
        own = entry.get("profile") or {}
        if not isinstance(own, Mapping):
            problems.append(Problem(f"devices[{i}].profile", "expected a mapping of settings"))
            continue
        expanded = {k: v for k, v in entry.items() if k != "template"}
        expanded.setdefault("role", template.role)
        expanded["profile"] = {**template.profile, **own}
        devices.append(expanded)
    if problems:
        raise ValidationError(problems)
    return {**document, "devices": devices}


def listing() -> str:
    """The catalogue as a table for `energy-p2p-edge devices templates`."""
    rows = [
        (t.name, t.role, str(t.profile.get("profile", "")), f"{t.brand}: {t.model}")
        for t in catalogue().values()
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        f"{name:<{widths[0]}}  {role:<{widths[1]}}  {profile:<{widths[2]}}  {what}"
        for name, role, profile, what in rows
    )

"""The integration's package: manifest, HACS metadata, translations and icons agree."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from homeassistant.helpers.entity import EntityDescription
from homeassistant.util.yaml import load_yaml_dict

from custom_components.energy_p2p import building_services, counter_offers, services
from custom_components.energy_p2p.binary_sensor import (
    BINARY_SENSORS,
    NODE_ONLINE,
    PORT_BINARY_SENSORS,
)
from custom_components.energy_p2p.building_entities import (
    MONITOR_SENSORS,
    OWNER_CUT_OFF,
    OWNER_SENSORS,
)
from custom_components.energy_p2p.button import SETTLE_NOW
from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.entity import NAMED_ROLES, OTHER_ROLE, USB_PORT
from custom_components.energy_p2p.event import OFFERS, TRADES, USB_SESSIONS
from custom_components.energy_p2p.number import NUMBERS
from custom_components.energy_p2p.select import PRICING_STRATEGY
from custom_components.energy_p2p.sensor import DEVICE_SENSORS, SENSORS
from custom_components.energy_p2p.switch import POLICY_SWITCHES, PORT_ENABLED

PACKAGE = Path(__file__).resolve().parent.parent / "custom_components" / DOMAIN


def load(name: str) -> dict:
    return json.loads((PACKAGE / name).read_text())


def test_manifest_declares_what_home_assistant_and_hacs_need() -> None:
    manifest = load("manifest.json")
    assert manifest["domain"] == DOMAIN
    assert manifest["config_flow"] is True
    assert manifest["iot_class"] == "local_push"
    assert manifest["integration_type"] == "hub"
    assert manifest["zeroconf"] == ["_energy-p2p._tcp.local."]
    assert manifest["requirements"] == []
    assert {"version", "documentation", "issue_tracker", "codeowners"} <= manifest.keys()
    hacs = json.loads((PACKAGE.parent.parent / "hacs.json").read_text())
    assert hacs["name"] == manifest["name"] == "Energy P2P"
    assert hacs["homeassistant"] == "2026.10.0"
    assert hacs["render_readme"] is True


def test_english_translations_are_the_strings() -> None:
    # Custom integrations load translations/en.json; strings.json is the source.
    assert load("translations/en.json") == load("strings.json")


def has_own_icon(description: EntityDescription) -> bool:
    """An entity whose device class gives it an icon keeps that icon (an enum's does not)."""
    device_class = getattr(description, "device_class", None)
    return device_class is None or str(device_class) == "enum"


def test_every_entity_has_a_translated_name_and_an_icon_unless_its_device_class_has_one() -> None:
    strings, icons = load("strings.json")["entity"], load("icons.json")["entity"]
    every: dict[str, tuple[EntityDescription, ...]] = {
        "sensor": (*SENSORS, *DEVICE_SENSORS, *OWNER_SENSORS, *MONITOR_SENSORS),
        "binary_sensor": (*BINARY_SENSORS, NODE_ONLINE, *PORT_BINARY_SENSORS, OWNER_CUT_OFF),
        "switch": (*POLICY_SWITCHES, PORT_ENABLED),
        "number": NUMBERS,
        "select": (PRICING_STRATEGY,),
        "button": (SETTLE_NOW,),
        "event": (OFFERS, TRADES, USB_SESSIONS),
    }
    assert set(every) == set(strings) == set(icons)
    for platform, descriptions in every.items():
        keys = {d.translation_key for d in descriptions}
        assert keys == set(strings[platform]), platform
        assert {d.translation_key for d in descriptions if has_own_icon(d)} == set(
            icons[platform]
        ), platform
        assert len({d.key for d in descriptions}) == len(descriptions), platform
    # Each event type and each state of an enum has its translation.
    for description in (OFFERS, TRADES, USB_SESSIONS):
        states = strings["event"][description.translation_key]["state_attributes"]
        assert set(states["event_type"]["state"]) == set(description.event_types or ())
    for description in DEVICE_SENSORS:
        if description.options:
            assert set(strings["sensor"][description.translation_key]["state"]) == set(
                description.options
            )
    assert set(strings["select"]["pricing_strategy"]["state"]) == set(
        PRICING_STRATEGY.options or ()
    )
    # Every device name a device under the edge controller can get.
    roles = (*NAMED_ROLES, OTHER_ROLE)
    kinds = {*roles, *(f"{role}_named" for role in roles), USB_PORT, "building_owner"}
    assert set(load("strings.json")["device"]) == kinds


def test_every_action_is_described_translated_and_has_an_icon() -> None:
    actions = {
        v
        for module in (services, counter_offers, building_services)
        for k, v in vars(module).items()
        if k.startswith("SERVICE_")
    }
    described = load_yaml_dict(str(PACKAGE / "services.yaml"))
    strings = load("strings.json")["services"]
    assert actions == set(described) == set(strings) == set(load("icons.json")["services"])
    for action, spec in described.items():
        assert set(spec["fields"]) == set(strings[action]["fields"]), action
        assert strings[action]["name"] and strings[action]["description"], action


# Every rule of Home Assistant's Integration Quality Scale, Bronze to Platinum.
QUALITY_RULES = {
    *("action-setup", "appropriate-polling", "brands", "common-modules"),
    *("config-flow-test-coverage", "config-flow", "dependency-transparency", "docs-actions"),
    *("docs-high-level-description", "docs-installation-instructions"),
    *("docs-removal-instructions", "entity-event-setup", "entity-unique-id"),
    *("has-entity-name", "runtime-data", "test-before-configure", "test-before-setup"),
    *("unique-config-entry", "action-exceptions", "config-entry-unloading"),
    *("docs-configuration-parameters", "docs-installation-parameters", "entity-unavailable"),
    *("integration-owner", "log-when-unavailable", "parallel-updates"),
    *("reauthentication-flow", "test-coverage", "devices", "diagnostics"),
    *("discovery-update-info", "discovery", "docs-data-update", "docs-examples"),
    *("docs-known-limitations", "docs-supported-devices", "docs-supported-functions"),
    *("docs-troubleshooting", "docs-use-cases", "dynamic-devices", "entity-category"),
    *("entity-device-class", "entity-disabled-by-default", "entity-translations"),
    *("exception-translations", "icon-translations", "reconfiguration-flow", "repair-issues"),
    *("stale-devices", "async-dependency", "inject-websession", "strict-typing"),
    *("docs-triggers", "docs-conditions"),
}

# Rules Home Assistant's quality scale allows no exemption from.
NEVER_EXEMPT = {"dependency-transparency", "config-flow", "test-before-configure"}


def test_the_quality_scale_names_every_rule_and_its_documentation_exists() -> None:
    rules = load_yaml_dict(str(PACKAGE / "quality_scale.yaml"))["rules"]
    assert set(rules) == QUALITY_RULES
    for name, rule in rules.items():
        status = rule if isinstance(rule, str) else rule["status"]
        assert status in ("done", "todo", "exempt"), name
        if status in ("exempt", "todo"):
            assert rule["comment"], f"{name}: an exemption (or what is left) needs its reason"
        assert not (status == "exempt" and name in NEVER_EXEMPT), name
    # The API client is its own typed package, not yet published: todo until it is.
    assert rules["dependency-transparency"]["status"] == "todo"
    client = PACKAGE / "energy_p2p_client"
    assert (client / "py.typed").is_file()
    assert not any(
        line.startswith(("from homeassistant", "import homeassistant", "from .."))
        for path in client.glob("*.py")
        for line in path.read_text().splitlines()
    )
    project = (
        PACKAGE.parent.parent / "clients" / "energy-p2p-client" / "pyproject.toml"
    ).read_text()
    assert 'name = "energy-p2p-client"' in project
    assert 'license = "Apache-2.0"' in project
    assert (PACKAGE.parent.parent / "LICENSE").read_text().lstrip().startswith("Apache License")
    # The docs-* rules point at the integration's documentation: it has each part.
    docs = (PACKAGE.parent.parent / "docs" / "home-assistant.md").read_text()
    for heading in (
        "## Installation",
        "## Configuration",
        "## Supported devices and entities",
        "## Actions",
        "## Data updates",
        "## Examples",
        "## Use cases",
        "## Known limitations",
        "## Troubleshooting",
        "## Removing the integration",
    ):
        assert f"\n{heading}\n" in docs, heading
    for action in load_yaml_dict(str(PACKAGE / "services.yaml")):
        assert f"`energy_p2p.{action}`" in docs, action


def png_size(path: Path) -> tuple[int, int, int]:
    """Width, height and colour type from a PNG's IHDR chunk (the first, at byte 8)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", path.name
    width, height, _depth, colour = struct.unpack(">IIBB", data[16:26])
    return width, height, colour


def test_the_brand_images_home_assistant_serves_have_its_sizes() -> None:
    # Home Assistant 2026.3+ serves a custom integration's brand/ folder: a square icon of
    # 256 px (512 at 2x) and a logo 128-256 px on its shortest side (256-512 at 2x).
    brand = PACKAGE / "brand"
    assert (brand / "icon.svg").is_file()  # their source (scripts/make-brand-images)
    assert png_size(brand / "icon.png")[:2] == (256, 256)
    assert png_size(brand / "icon@2x.png")[:2] == (512, 512)
    for logo in ("logo", "dark_logo"):
        width, height, _ = png_size(brand / f"{logo}.png")
        width_2x, height_2x, _ = png_size(brand / f"{logo}@2x.png")
        assert 128 <= min(width, height) <= 256, logo
        assert (height_2x, abs(width_2x - 2 * width) <= 2) == (2 * height, True), logo
    for image in brand.glob("*.png"):
        assert png_size(image)[2] == 6, image.name  # RGBA: a transparent background
        assert image.stat().st_size < 50_000, image.name


def test_the_integration_never_imports_the_edge_controller() -> None:
    for source in PACKAGE.glob("*.py"):
        assert "edge_controller" not in source.read_text(), source.name

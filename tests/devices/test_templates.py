"""Device templates are data: `template: NAME` in edge.yaml gives the role and profile
settings of a known device, the entry's own settings written over them, and mistakes keep
their paths; `devices templates` lists the catalogue."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_controller.config import ConfigError, parse_config
from edge_controller.devices.sunspec import SunSpecSource
from edge_controller.devices.templates import catalogue

ROOT = Path(__file__).resolve().parents[2]


def document(tmp_path: Path, *devices: dict) -> dict:
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    return {"name": "x", "genesis": str(genesis), "devices": list(devices)}


def test_a_template_gives_role_and_settings_and_the_entry_completes_them(tmp_path: Path) -> None:
    config = parse_config(
        document(
            tmp_path,
            {
                "id": "inverter",
                "resource": "a/pv",
                "template": "fronius-gen24",
                "profile": {"host": "192.168.1.50"},
            },
            {
                "id": "meter",
                "template": "solaredge-meter",
                "profile": {"host": "10.0.0.7", "unit": 2},
            },
            {"id": "battery", "resource": "a/battery", "template": "homeassistant-battery"},
        ),
        "edge.yaml",
        tmp_path,
    )
    inverter, meter, battery = config.devices
    assert inverter.role == "pv" and isinstance(inverter.profile, SunSpecSource)
    assert (inverter.profile.host, inverter.profile.port, inverter.profile.models) == (
        "192.168.1.50",
        502,
        (103,),
    )
    assert meter.role == "grid_meter" and isinstance(meter.profile, SunSpecSource)
    assert (meter.profile.port, meter.profile.unit) == (1502, 2)
    assert battery.role == "battery" and battery.profile.name == "homeassistant"


def test_an_unknown_template_or_a_missing_setting_is_named_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            document(
                tmp_path,
                {"id": "a", "template": "fronius"},
                {"id": "b", "resource": "a/pv", "template": "fronius-gen24"},
            ),
            "edge.yaml",
            tmp_path,
        )
    problems = "\n".join(info.value.problems)
    assert "devices[0].template: no template named 'fronius'" in problems


def test_every_shipped_template_is_a_valid_device_once_its_owner_s_settings_are_in(
    tmp_path: Path,
) -> None:
    own = {
        "sunspec": {"host": "192.168.1.50", "battery_capacity_wh": 10_000},
        "opendtu": {"serial": "114182912345", "power_rating_w": 800},
        "victron": {"portal_id": "c0619ab12345", "battery_capacity_wh": 10_000},
        "homeassistant": {},
    }
    devices = [
        {
            "id": name,
            "resource": f"a/{name}",
            "template": name,
            "profile": own[t.profile["profile"]],
        }
        for name, t in catalogue().items()
    ]
    config = parse_config(document(tmp_path, *devices), "edge.yaml", tmp_path)
    assert len(config.devices) == len(catalogue()) >= 10


def test_devices_templates_lists_the_catalogue() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "edge_controller", "devices", "templates"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in catalogue():
        assert name in listed
    assert "Fronius" in listed and "sunspec" in listed

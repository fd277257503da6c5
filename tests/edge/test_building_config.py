"""`building:` in edge.yaml is read by the one checker: a right section becomes the tree,
the taps and the settlement; every mistake is named with its path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_controller.config import ConfigError, parse_config
from edge_controller.metering import SharingKey

METER = {
    "profile": "generic",
    "telemetry": {
        "import_energy_wh": {"topic": "m/t", "path": "in"},
        "export_energy_wh": {"topic": "m/t", "path": "out"},
    },
}
RELAY = {"profile": "generic", "telemetry": {}, "commands": {"start_stop": {"topic": "r/cmd"}}}


def document(tmp_path: Path, building: dict[str, Any]) -> dict[str, Any]:
    (tmp_path / "genesis.json").write_text("{}")
    return {
        "name": "Block A",
        "genesis": "genesis.json",
        "devices": [
            {"id": "main-meter", "role": "grid_meter", "profile": METER},
            {"id": "flat-meter", "role": "meter", "profile": METER},
            {"id": "pv-meter", "role": "meter", "profile": METER},
            {"id": "relay", "role": "meter", "profile": RELAY},
        ],
        "building": building,
    }


GOOD = {
    "owners": [{"id": "landlord"}, {"id": "tenant", "prepaid": 5_000}],
    "taps": [
        {"id": "main", "owner": "landlord", "device": "main-meter"},
        {"id": "pv", "owner": "landlord", "device": "pv-meter", "parent": "main", "shared": True},
        {
            "id": "flat",
            "owner": "tenant",
            "device": "flat-meter",
            "parent": "main",
            "cut_off": {"device": "relay"},
        },
    ],
    "transfers": [{"tap": "flat", "owner": "landlord", "since": "2027-02-01"}],
    "sharing": {"key": "static", "shares": {"tenant": 60, "landlord": 40}, "price": 120},
}


def test_a_building_becomes_its_tree_taps_and_settlement(tmp_path: Path) -> None:
    config = parse_config(document(tmp_path, GOOD), "edge.yaml", tmp_path)
    building = config.building
    assert building is not None
    assert building.period_ms == 900_000  # the quarter hour by default
    assert building.tree.owner_at("flat", 1_800_000_000_000) == "tenant"
    assert building.tree.owner_at("flat", 1_802_000_000_000) == "landlord"  # after Feb 1st
    assert building.community.sharing is not None
    assert building.community.sharing.key is SharingKey.STATIC
    assert building.community.shared_price == 120
    assert building.owner("tenant") is not None and building.owners[1].prepaid == 5_000
    flat = building.taps[2]
    assert flat.cut_off is not None and flat.cut_off.device == "relay"


def problems(tmp_path: Path, building: dict[str, Any], **extra: Any) -> str:
    doc = {**document(tmp_path, building), **extra}
    with pytest.raises(ConfigError) as info:
        parse_config(doc, "edge.yaml", tmp_path)
    return "\n".join(info.value.problems)


def test_each_mistake_in_a_building_has_its_path(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "period_s": 3_600,
            "owners": [{"id": "landlord"}, {"id": "landlord"}, {"id": "t", "account": "me"}],
            "taps": [
                {
                    "id": "main",
                    "owner": "landlord",
                    "device": "main-meter",
                    "cut_off": {"usb_port": 1, "device": "relay"},
                }
            ],
            "transfers": [{"tap": "main", "owner": "t", "since": "soon"}],
            "sharing": {"key": "priority"},
        },
    )
    for path in (
        "building.period_s: expected an integer from 1 to 1800",
        "building.owners[2].account",
        "building.taps[0].cut_off.usb_port",
        "building.transfers[0].since",
        "building.sharing.order",
    ):
        assert path in found


def test_names_that_do_not_match_are_named_with_their_paths(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "owners": [{"id": "landlord"}, {"id": "landlord"}, {"id": "grid"}],
            "taps": [
                {"id": "main", "owner": "landlord", "device": "main-meter"},
                {"id": "flat", "owner": "nobody", "device": "flat-meter", "parent": "attic"},
            ],
            "sharing": {"key": "priority", "order": ["ghost"]},
        },
    )
    for path in (
        "building.owners[1].id: 'landlord' is listed twice",
        "building.owners[2].id: 'grid' is the counterparty",
        "building.taps[1].owner: 'nobody' is not in building.owners",
        "building.taps[1].parent: names tap 'attic'",
        "building.sharing.order[0]: 'ghost' is not in building.owners",
        "building.sharing: no tap is shared",
    ):
        assert path in found


def test_taps_must_read_devices_with_counters_and_switch_real_ports(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        {
            "owners": [{"id": "landlord"}],
            "taps": [
                {"id": "main", "owner": "landlord", "device": "relay"},
                {
                    "id": "sub",
                    "owner": "landlord",
                    "device": "gone",
                    "parent": "main",
                    "cut_off": {"usb_port": 2},
                },
                {"id": "loop-a", "owner": "landlord", "device": "flat-meter", "parent": "loop-b"},
                {"id": "loop-b", "owner": "landlord", "device": "flat-meter", "parent": "loop-a"},
            ],
        },
    )
    assert "building.taps: metering points form a loop" in found
    loops_fixed = {
        "owners": [{"id": "landlord"}],
        "taps": [
            {"id": "main", "owner": "landlord", "device": "relay"},
            {
                "id": "sub",
                "owner": "landlord",
                "device": "gone",
                "parent": "main",
                "cut_off": {"usb_port": 2},
            },
        ],
    }
    found = problems(tmp_path, loops_fixed)
    for path in (
        "building.taps[0].device: 'relay' reports no import or export energy",
        "building.taps[1].device: 'gone' is not in devices",
        "building.taps[1].cut_off.usb_port: port 2 is not one of usb.ports",
    ):
        assert path in found


def test_a_period_shorter_than_the_control_cycle_is_refused(tmp_path: Path) -> None:
    found = problems(tmp_path, {**GOOD, "period_s": 5}, control_interval_s=10)
    assert "building.period_s: must be at least control_interval_s (10)" in found

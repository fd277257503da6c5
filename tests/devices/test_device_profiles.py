"""Profiles are data: topics and JSON paths per value, command topics with payload templates."""

from __future__ import annotations

import pytest

from edge_controller.devices import (
    Command,
    ProfileError,
    Quantity,
    opendtu_profile,
    profile_from_config,
    victron_profile,
)
from edge_controller.devices.profiles import CommandPoint, Profile, TelemetryPoint

GENERIC_CONFIG = {
    "profile": "generic",
    "name": "garage fuel cell",
    "telemetry": {
        "power_w": {"topic": "garage/fc/state", "path": "output.power"},
        "hydrogen_g": {"topic": "garage/fc/state", "path": "tank.h2_kg", "scale": 1000},
        "state": {"topic": "garage/fc/state", "path": "mode"},
    },
    "commands": {
        "setpoint_w": {"topic": "garage/fc/set", "payload": '{"target": {"watts": $value}}'},
        "start_stop": {"topic": "garage/fc/run"},
    },
    "constants": {"power_rating_w": 5000},
}


def test_generic_profile_from_configuration_maps_topics_paths_and_commands() -> None:
    profile = profile_from_config(GENERIC_CONFIG)

    assert profile.topics() == ("garage/fc/state",)
    hydrogen = next(p for p in profile.telemetry if p.quantity == Quantity.HYDROGEN_G)
    assert hydrogen.path == ("tank", "h2_kg")
    assert hydrogen.scale == 1000
    setpoint = profile.command_point(Command.SETPOINT_W)
    assert setpoint is not None
    assert setpoint.render(1500) == b'{"target": {"watts": 1500}}'
    assert setpoint.value_path == ("target", "watts")
    start = profile.command_point(Command.START_STOP)
    assert start is not None
    assert start.render(1) == b"1"
    assert profile.quantities() >= {Quantity.POWER_RATING_W, Quantity.STATE}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"profile": "modbus"}, "device.profile: expected one of generic, opendtu, victron"),
        ({"telemetry": {"watts": {"topic": "a"}}}, "device.telemetry.watts: unknown name"),
        ({"telemetry": {"power_w": {"path": "x"}}}, "device.telemetry.power_w.topic"),
        ({"telemetry": {"power_w": {"topic": "a", "path": "a..b"}}}, "empty segment"),
        ({"telemetry": {"power_w": {"topic": "a", "scale": 0}}}, "power_w.scale"),
        (
            {"commands": {"setpoint_w": {"topic": "a", "payload": '{"w": 1}'}}},
            "device.commands.setpoint_w.payload",
        ),
        ({"constants": {"power_rating_w": "5 kW"}}, "device.constants.power_rating_w"),
    ],
)
def test_configuration_mistakes_name_their_place(change: dict[str, object], message: str) -> None:
    with pytest.raises(ProfileError, match=message.replace(".", r"\.")):
        profile_from_config({**GENERIC_CONFIG, **change})


def test_a_quantity_mapped_twice_is_refused() -> None:
    with pytest.raises(ProfileError, match="mapped twice"):
        Profile(
            "twice",
            (
                TelemetryPoint(Quantity.POWER_W, "a"),
                TelemetryPoint(Quantity.POWER_W, "b"),
            ),
        )


def test_a_template_that_is_not_json_is_refused() -> None:
    with pytest.raises(ProfileError, match="must be JSON"):
        CommandPoint(Command.SETPOINT_W, "t", "watts=$value")


def test_opendtu_profile_uses_the_documented_topics() -> None:
    profile = profile_from_config(
        {
            "profile": "opendtu",
            "base_topic": "solar/",
            "serial": "116180000001",
            "power_rating_w": 800,
        }
    )
    assert profile == opendtu_profile("solar", "116180000001", 800)
    topics = {p.quantity: p.topic for p in profile.telemetry}
    assert topics[Quantity.POWER_W] == "solar/116180000001/0/power"
    assert topics[Quantity.EXPORT_ENERGY_WH] == "solar/116180000001/0/yieldtotal"
    assert topics[Quantity.EXPORT_LIMIT_W] == "solar/116180000001/status/limit_absolute"
    limit = profile.command_point(Command.EXPORT_LIMIT_W)
    assert limit is not None
    assert limit.topic == "solar/116180000001/cmd/limit_nonpersistent_absolute"
    assert limit.render(600) == b"600"


def test_victron_profile_reads_n_topics_writes_w_topics_and_keeps_venus_awake() -> None:
    profile = victron_profile("c0619ab1", battery_capacity_wh=9600, pvinverter_instance=None)
    topics = {p.quantity: p.topic for p in profile.telemetry}
    assert topics[Quantity.SOC_PERCENT] == "N/c0619ab1/battery/512/Soc"
    assert topics[Quantity.GRID_POWER_W] == "N/c0619ab1/grid/30/Ac/Power"
    assert Quantity.POWER_W not in topics
    assert all(p.path == ("value",) for p in profile.telemetry)
    setpoint = profile.command_point(Command.BATTERY_SETPOINT_W)
    assert setpoint is not None
    assert setpoint.topic == "W/c0619ab1/vebus/276/Hub4/L1/AcPowerSetpoint"
    assert setpoint.render(-1200) == b'{"value": -1200}'
    assert profile.keepalive is not None
    assert profile.keepalive.topic == "R/c0619ab1/keepalive"
    assert profile.keepalive.interval_ms < profile.keepalive.device_timeout_ms
    assert profile.constants[Quantity.CAPACITY_WH] == 9600
    assert not profile.retained

"""The integration's package: manifest, HACS metadata, translations and icons agree."""

from __future__ import annotations

import json
from pathlib import Path

from homeassistant.helpers.entity import EntityDescription

from custom_components.energy_p2p.binary_sensor import (
    BINARY_SENSORS,
    NODE_ONLINE,
    PORT_BINARY_SENSORS,
)
from custom_components.energy_p2p.button import SETTLE_NOW
from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.entity import OWN_DEVICE_ROLES, USB_PORT
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


def test_every_entity_has_a_translated_name_and_an_icon() -> None:
    strings, icons = load("strings.json")["entity"], load("icons.json")["entity"]
    every: dict[str, tuple[EntityDescription, ...]] = {
        "sensor": (*SENSORS, *DEVICE_SENSORS),
        "binary_sensor": (*BINARY_SENSORS, NODE_ONLINE, *PORT_BINARY_SENSORS),
        "switch": (*POLICY_SWITCHES, PORT_ENABLED),
        "number": NUMBERS,
        "select": (PRICING_STRATEGY,),
        "button": (SETTLE_NOW,),
        "event": (OFFERS, TRADES, USB_SESSIONS),
    }
    assert set(every) == set(strings) == set(icons)
    for platform, descriptions in every.items():
        keys = {d.translation_key for d in descriptions}
        assert keys == set(strings[platform]) == set(icons[platform]), platform
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
    kinds = {*OWN_DEVICE_ROLES, *(f"{role}_named" for role in OWN_DEVICE_ROLES), USB_PORT}
    assert set(load("strings.json")["device"]) == kinds


def test_the_integration_never_imports_the_edge_controller() -> None:
    for source in PACKAGE.glob("*.py"):
        assert "edge_controller" not in source.read_text(), source.name

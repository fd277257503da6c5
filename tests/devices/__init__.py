"""Tests of the device layer: physics, profiles, the MQTT adapter and a real broker."""

"""Simulated hardware on MQTT: publishes telemetry in a profile's layout and obeys its commands.

The production adapter reads a simulator through exactly the code path it uses for real
hardware, because the simulator speaks the same profile: bare numbers for OpenDTU,
`{"value": x}` on `N/...` for Victron (only while keepalives arrive), JSON documents for
the generic mapping.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from edge_controller.devices.clock import Clock
from edge_controller.devices.mqtt import Publisher
from edge_controller.devices.profiles import JsonPath, Profile, TelemetryPoint
from edge_controller.simulation.models import SimulatedHardware, TelemetryValue

_LOGGER = logging.getLogger(__name__)


class SimulatedMqttDevice:
    """Puts a `SimulatedHardware` on MQTT as the device a profile describes."""

    def __init__(
        self, device_id: str, hardware: SimulatedHardware, profile: Profile, clock: Clock
    ) -> None:
        self.device_id = device_id
        self.hardware = hardware
        self.profile = profile
        self.rejected_commands: Counter[str] = Counter()
        self.published = 0
        self._clock = clock
        self._publisher: Publisher | None = None
        self._last_keepalive_ms: int | None = None
        self._commands = {point.topic: point for point in profile.commands}

    def subscriptions(self) -> Sequence[str]:
        """Command topics, and the keepalive topic when the profile has one."""
        topics = list(self._commands)
        if self.profile.keepalive is not None:
            topics.append(self.profile.keepalive.topic)
        return topics

    @property
    def connected(self) -> bool:
        """Whether the device is on the broker with its command topics subscribed."""
        return self._publisher is not None

    def awake(self) -> bool:
        """Whether the device publishes now: always, or only after a recent keepalive."""
        keepalive = self.profile.keepalive
        if keepalive is None:
            return True
        return (
            self._last_keepalive_ms is not None
            and self._clock.now_ms() - self._last_keepalive_ms <= keepalive.device_timeout_ms
        )

    async def on_connect(self, publisher: Publisher) -> None:
        """Remember the publisher and publish the current values."""
        self._publisher = publisher
        await self.publish_telemetry()

    async def on_message(self, topic: str, payload: bytes) -> None:
        """A keepalive or a command."""
        keepalive = self.profile.keepalive
        if keepalive is not None and topic == keepalive.topic:
            self._last_keepalive_ms = self._clock.now_ms()
            if not _suppresses_republish(payload):
                await self.publish_telemetry()
            return
        point = self._commands.get(topic)
        if point is None:
            return
        value = _command_value(payload, point.value_path)
        if value is None:
            self.rejected_commands[point.command.value] += 1
            _LOGGER.warning("%s: ignored malformed %s command %r", self.device_id, topic, payload)
            return
        self.hardware.advance_to(self._clock.now_ms())
        self.hardware.obey(point.command, value)
        await self.publish_telemetry()

    def on_disconnect(self) -> None:
        """Forget the publisher; publishing waits until the next connect."""
        self._publisher = None

    async def on_tick(self) -> None:
        """Advance the physics to now and publish."""
        await self.publish_telemetry()

    async def publish_telemetry(self) -> None:
        """Advance to now and publish every value the profile maps, if the device is awake."""
        self.hardware.advance_to(self._clock.now_ms())
        if self._publisher is None or not self.awake():
            return
        values = self.hardware.telemetry()
        for topic in self.profile.topics():
            document = _document(self.profile.points_on(topic), values)
            if document is _NOTHING:
                continue
            await self._publisher.publish(
                topic, json.dumps(document).encode(), qos=0, retain=self.profile.retained
            )
            self.published += 1


_NOTHING: Any = object()


def _document(points: Sequence[TelemetryPoint], values: Mapping[Any, TelemetryValue]) -> Any:
    """The payload of one topic: the bare value, or a JSON object with each value at its path."""
    document: Any = _NOTHING
    for point in points:
        if point.quantity not in values:
            continue
        value = _published_value(values[point.quantity], point.scale)
        if not point.path:
            return value
        if document is _NOTHING:
            document = {}
        node = document
        for step in point.path[:-1]:
            node = node.setdefault(step, {})
        node[point.path[-1]] = value
    return document


def _published_value(value: TelemetryValue, scale: float) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str) or scale == 1.0:
        return value
    return value / scale


def _suppresses_republish(payload: bytes) -> bool:
    try:
        options = json.loads(payload or b"{}").get("keepalive-options", [])
    except (ValueError, AttributeError):
        return False
    return isinstance(options, list) and "suppress-republish" in options


def _command_value(payload: bytes, path: JsonPath) -> int | None:
    try:
        node: Any = json.loads(payload)
    except ValueError:
        return None
    for step in path:
        if not isinstance(node, dict) or step not in node:
            return None
        node = node[step]
    if isinstance(node, bool) or not isinstance(node, int | float) or node != int(node):
        return None
    return int(node)

"""The MQTT device adapter: reads a device's telemetry by its profile and sends its commands.

One `MqttDevice` serves one profile. It keeps the latest value of each quantity as a
`Sample` stamped with the receive time, rejects malformed payloads with a logged and
counted reason, and sends keepalives when the profile asks for them. `capabilities_of`
turns it into the small capability objects (battery, export limiter, ...) its profile
supports, which is all the rest of the app sees.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from edge_controller.devices.capabilities import FuelCellState
from edge_controller.devices.clock import Clock
from edge_controller.devices.mqtt import Publisher
from edge_controller.devices.profiles import (
    Command,
    JsonPath,
    Profile,
    Quantity,
    TelemetryPoint,
    kind_of,
)
from edge_controller.devices.samples import Sample

_LOGGER = logging.getLogger(__name__)

DEFAULT_STALE_AFTER_MS = 30_000
DEFAULT_MAX_PAYLOAD_BYTES = 4096
# Beyond any real household quantity; larger numbers are a broken device or an attack.
_LARGEST_VALUE = 10**12
# Quantities that cannot be negative, with their upper bound where one exists.
_RANGES: dict[Quantity, tuple[int, int | None]] = {
    Quantity.SOC_PERCENT: (0, 100),
    Quantity.CAPACITY_WH: (0, None),
    Quantity.POWER_RATING_W: (0, None),
    Quantity.IMPORT_ENERGY_WH: (0, None),
    Quantity.EXPORT_ENERGY_WH: (0, None),
    Quantity.HYDROGEN_G: (0, None),
}


class DeviceCommandError(RuntimeError):
    """A command could not be sent: the device does not take it or is not connected."""


class RejectedValueError(ValueError):
    """A payload or one value in it was refused; `reason` is a short code for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class DeviceStats:
    """What the adapter did with the messages it received."""

    accepted: int = 0
    unavailable: int = 0
    rejected: Counter[str] = field(default_factory=Counter)


class MqttDevice:
    """A device reached over MQTT, read and commanded through its profile."""

    def __init__(
        self,
        device_id: str,
        profile: Profile,
        clock: Clock,
        *,
        stale_after_ms: int = DEFAULT_STALE_AFTER_MS,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    ) -> None:
        self.device_id = device_id
        self.profile = profile
        self.stats = DeviceStats()
        self._clock = clock
        self._stale_after_ms = stale_after_ms
        self._max_payload_bytes = max_payload_bytes
        self._publisher: Publisher | None = None
        self._last_keepalive_ms: int | None = None
        self._numbers: dict[Quantity, Sample[int]] = {
            q: Sample(v, 0, None) for q, v in profile.constants.items()
        }
        self._texts: dict[Quantity, Sample[str]] = {}
        self._lists: dict[Quantity, Sample[tuple[str, ...]]] = {}

    @property
    def connected(self) -> bool:
        """Whether a publisher is attached, so commands can be sent."""
        return self._publisher is not None

    def quantities(self) -> frozenset[Quantity]:
        """Every quantity the profile provides, by telemetry or as a constant."""
        return self.profile.quantities()

    # -- MqttParticipant ---------------------------------------------------------------

    def subscriptions(self) -> Sequence[str]:
        """The telemetry topics of the profile."""
        return self.profile.topics()

    async def on_connect(self, publisher: Publisher) -> None:
        """Remember the publisher and wake the device up if it needs a keepalive."""
        self._publisher = publisher
        keepalive = self.profile.keepalive
        if keepalive is not None:
            await publisher.publish(keepalive.topic, keepalive.first_payload, qos=0)
            self._last_keepalive_ms = self._clock.now_ms()

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Take in one telemetry message."""
        self.receive(topic, payload)

    def on_disconnect(self) -> None:
        """Forget the publisher; commands fail as not connected until the next connect."""
        self._publisher = None

    async def on_tick(self) -> None:
        """Send the keepalive when it is due."""
        keepalive = self.profile.keepalive
        if keepalive is None or self._publisher is None:
            return
        now = self._clock.now_ms()
        if self._last_keepalive_ms is None or now - self._last_keepalive_ms >= (
            keepalive.interval_ms
        ):
            await self._publisher.publish(keepalive.topic, keepalive.repeat_payload, qos=0)
            self._last_keepalive_ms = now

    # -- telemetry ---------------------------------------------------------------------

    def receive(self, topic: str, payload: bytes) -> int:
        """Parse one message and store every value it carries; returns how many were taken.

        Malformed payloads and values are logged with their reason and counted in `stats`;
        they never raise.
        """
        points = self.profile.points_on(topic)
        if not points:
            return 0
        try:
            document = self._decode(payload)
        except RejectedValueError as rejection:
            self._reject(topic, rejection)
            return 0
        now = self._clock.now_ms()
        taken = 0
        for point in points:
            try:
                raw = _extract(document, point.path)
                if raw is None:
                    # Venus OS publishes null for a value the device does not have right now.
                    self._forget(point.quantity)
                    self.stats.unavailable += 1
                    continue
                self._store(point, raw, now)
                taken += 1
            except RejectedValueError as rejection:
                self._reject(topic, rejection)
        self.stats.accepted += taken
        return taken

    def number(self, quantity: Quantity) -> Sample[int] | None:
        """The latest numeric value of `quantity` (W, Wh, %, g), or None."""
        return self._numbers.get(quantity)

    def text(self, quantity: Quantity) -> Sample[str] | None:
        """The latest text value of `quantity` (such as a state), or None."""
        return self._texts.get(quantity)

    def codes(self, quantity: Quantity) -> Sample[tuple[str, ...]] | None:
        """The latest list of codes of `quantity` (such as fault codes), or None."""
        return self._lists.get(quantity)

    def snapshot(self) -> dict[str, Any]:
        """Every current value with its age and freshness, for the API and diagnostics."""
        now = self._clock.now_ms()
        readings: dict[Quantity, Sample[Any]] = {**self._numbers, **self._texts, **self._lists}
        return {
            q.value: {
                "value": list(r.value) if isinstance(r.value, tuple) else r.value,
                "at_ms": r.at_ms,
                "fresh": r.fresh(now),
            }
            for q, r in sorted(readings.items())
        }

    def _decode(self, payload: bytes) -> Any:
        if len(payload) > self._max_payload_bytes:
            raise RejectedValueError("too_large", f"{len(payload)} bytes")
        try:
            return json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RejectedValueError("invalid_json", str(error)) from None

    def _store(self, point: TelemetryPoint, raw: Any, now: int) -> None:
        kind = kind_of(point.quantity)
        if kind == "number":
            self._numbers[point.quantity] = self._reading(_number(point, raw), now)
        elif kind == "text":
            self._texts[point.quantity] = self._reading(_text(point.quantity, raw), now)
        else:
            self._lists[point.quantity] = self._reading(_codes(raw), now)

    def _reading(self, value: Any, now: int) -> Sample[Any]:
        return Sample(value, now, self._stale_after_ms)

    def _forget(self, quantity: Quantity) -> None:
        self._numbers.pop(quantity, None)
        self._texts.pop(quantity, None)
        self._lists.pop(quantity, None)

    def _reject(self, topic: str, rejection: RejectedValueError) -> None:
        self.stats.rejected[rejection.reason] += 1
        count = self.stats.rejected[rejection.reason]
        # A broken device repeats itself every second; log the first and then every 100th.
        level = logging.WARNING if count == 1 or count % 100 == 0 else logging.DEBUG
        _LOGGER.log(
            level,
            "%s: rejected payload on %s (%s, %d so far): %s",
            self.device_id,
            topic,
            rejection.reason,
            count,
            rejection.detail,
        )

    # -- commands ----------------------------------------------------------------------

    def source_of(self, quantity: Quantity) -> str | None:
        """The topic and JSON path `quantity` is read from."""
        for point in self.profile.telemetry:
            if point.quantity is quantity:
                return f"mqtt {point.topic} {'/'.join(map(str, point.path))}"
        return None

    def supports(self, command: Command) -> bool:
        """Whether the profile knows how to send `command`."""
        return self.profile.command_point(command) is not None

    async def send(self, command: Command, value: int) -> None:
        """Send `command` with its integer value to the device (QoS 1, not retained)."""
        point = self.profile.command_point(command)
        if point is None:
            raise DeviceCommandError(f"{self.device_id} does not take {command}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise DeviceCommandError(f"{command} needs an integer, got {value!r}")
        if self._publisher is None:
            raise DeviceCommandError(f"{self.device_id} is not connected")
        await self._publisher.publish(point.topic, point.render(value), qos=1)
        _LOGGER.info("%s: sent %s = %d", self.device_id, command, value)


def _extract(document: Any, path: JsonPath) -> Any:
    node = document
    for step in path:
        if isinstance(node, dict) and step in node:
            node = node[step]
        elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
            node = node[int(step)]
        else:
            raise RejectedValueError("missing_field", f"no {'.'.join(path)} in payload")
    return node


def _number(point: TelemetryPoint, raw: Any) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise RejectedValueError("not_a_number", f"{point.quantity} = {raw!r}")
    value = round(raw * point.scale)
    low, high = _RANGES.get(point.quantity, (-_LARGEST_VALUE, _LARGEST_VALUE))
    if value < low or value > (high if high is not None else _LARGEST_VALUE):
        raise RejectedValueError("out_of_range", f"{point.quantity} = {value}")
    return value


def _text(quantity: Quantity, raw: Any) -> str:
    if not isinstance(raw, str):
        raise RejectedValueError("not_text", f"{quantity} = {raw!r}")
    if quantity == Quantity.STATE and raw not in {state.value for state in FuelCellState}:
        raise RejectedValueError("unknown_state", f"{quantity} = {raw!r}")
    return raw


def _codes(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not all(
        isinstance(code, str | int) and not isinstance(code, bool) for code in raw
    ):
        raise RejectedValueError("not_a_list", f"expected a list of codes, got {raw!r}")
    return tuple(str(code) for code in raw)

"""The thin seam between device code and an MQTT client.

Device adapters and simulators are `MqttParticipant`s: they name the topics they need, are
handed a `Publisher` when the connection is up, and receive messages as (topic, bytes).
They never own a connection, so they are tested with any publisher and the app decides how
to connect (TLS, credentials, reconnect). `run_participants` drives them on an
`aiomqtt.Client`.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Sequence
from typing import Protocol

import aiomqtt

from edge_controller.aio import cancel_and_wait

_LOGGER = logging.getLogger(__name__)


class Publisher(Protocol):
    """Anything that can publish an MQTT message; `aiomqtt.Client` is one."""

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        """Publish `payload` on `topic`."""
        ...


class MqttParticipant(Protocol):
    """A device adapter or simulator that lives on an MQTT connection."""

    def subscriptions(self) -> Sequence[str]:
        """Topic filters to subscribe to (wildcards allowed)."""
        ...

    async def on_connect(self, publisher: Publisher) -> None:
        """Called once subscriptions are in place, with the publisher to use from now on."""
        ...

    async def on_message(self, topic: str, payload: bytes) -> None:
        """Handle one message on a subscribed topic; must never raise for bad payloads."""
        ...

    def on_disconnect(self) -> None:
        """The connection is gone: drop the publisher until the next `on_connect`."""
        ...

    async def on_tick(self) -> None:
        """Periodic work: keepalives, publishing telemetry."""
        ...


def payload_bytes(payload: bytes | bytearray | str | int | float | None) -> bytes:
    """The raw bytes of an aiomqtt payload, whatever type the client handed over."""
    if payload is None:
        return b""
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    return str(payload).encode()


async def run_participants(
    client: aiomqtt.Client,
    participants: Sequence[MqttParticipant],
    tick_interval_s: float = 1.0,
) -> None:
    """Subscribe, then dispatch messages and ticks to `participants` until cancelled.

    `client` must be connected (inside `async with`). An error raised by one participant is
    logged and does not stop the others; `aiomqtt.MqttError` (connection lost) propagates
    so the caller can reconnect and call this again.
    """
    filters = sorted({f for p in participants for f in p.subscriptions()})
    for topic_filter in filters:
        await client.subscribe(topic_filter, qos=1)
    for participant in participants:
        await participant.on_connect(client)
    ticker = asyncio.create_task(_tick_forever(participants, tick_interval_s))
    try:
        async for message in client.messages:
            payload = payload_bytes(message.payload)
            for participant in participants:
                if any(message.topic.matches(f) for f in participant.subscriptions()):
                    await _guarded(participant.on_message(message.topic.value, payload))
    finally:
        await cancel_and_wait(ticker)
        for participant in participants:
            participant.on_disconnect()


async def serve_on_broker(
    hostname: str,
    port: int,
    participants: Sequence[MqttParticipant],
    *,
    username: str | None = None,
    password: str | None = None,
    tls_context: ssl.SSLContext | None = None,
    tick_interval_s: float = 1.0,
    first_retry_s: float = 0.5,
    max_retry_s: float = 30.0,
) -> None:
    """Connect to the device broker and run `participants`, reconnecting with backoff.

    Runs until cancelled. Participants keep their readings across reconnects (they go
    stale if the outage outlasts their timeout) and get `on_connect` again each time.
    """
    delay = first_retry_s
    while True:
        try:
            async with aiomqtt.Client(
                hostname, port, username=username, password=password, tls_context=tls_context
            ) as client:
                delay = first_retry_s
                await run_participants(client, participants, tick_interval_s)
        except aiomqtt.MqttError as error:
            _LOGGER.warning(
                "device broker %s:%d lost (%s); reconnecting in %.1f s",
                hostname,
                port,
                error,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_retry_s)


async def _tick_forever(participants: Sequence[MqttParticipant], interval_s: float) -> None:
    while True:
        for participant in participants:
            await _guarded(participant.on_tick())
        await asyncio.sleep(interval_s)


async def _guarded(call: Awaitable[None]) -> None:
    try:
        await call
    except aiomqtt.MqttError:
        raise
    except Exception:
        _LOGGER.exception("device participant failed; continuing with the others")

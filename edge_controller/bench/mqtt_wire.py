"""A minimal MQTT 3.1.1 client for the transport benchmark's simulated homes.

Only what a home of the benchmark needs: CONNECT (persistent session, optional login),
SUBSCRIBE at QoS 1, PUBLISH at QoS 1 (retained or not), PUBACK both ways, PINGREQ and
DISCONNECT, over one asyncio TLS connection. Receiving costs a fixed-header parse, a dict
look-up of the payload and one clock reading per read from the socket, so a few hundred
connections per process measure the broker, not the client. Not for the edge controller:
it neither reconnects nor resends (the benchmark counts a lost connection instead).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Sequence

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
# Bound on one packet from the broker: the benchmark's messages are far smaller.
MAX_PACKET = 1 << 20
CONNACK_REFUSALS = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


class MqttWireError(RuntimeError):
    """The broker refused or broke the protocol (the reason in the message)."""


def _length(value: int) -> bytes:
    """MQTT's variable-length "remaining length"."""
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return len(data).to_bytes(2, "big") + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _length(len(body)) + body


def connect_packet(
    client_id: str, username: str | None, password: str | None, keepalive: int, clean: bool
) -> bytes:
    """CONNECT for MQTT 3.1.1."""
    flags = 0x02 if clean else 0x00
    payload = _string(client_id)
    if username is not None:
        flags |= 0x80
        payload += _string(username)
    if password is not None:
        flags |= 0x40
        payload += _string(password)
    variable = _string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    return _packet(0x10, variable + payload)


def subscribe_packet(packet_id: int, topics: Sequence[tuple[str, int]]) -> bytes:
    """SUBSCRIBE to `topics` (filter, QoS)."""
    body = packet_id.to_bytes(2, "big") + b"".join(_string(t) + bytes([q]) for t, q in topics)
    return _packet(0x82, body)


def publish_packet(topic: str, payload: bytes, packet_id: int, retain: bool) -> bytes:
    """PUBLISH at QoS 1."""
    body = _string(topic) + packet_id.to_bytes(2, "big") + payload
    return _packet(0x32 | (0x01 if retain else 0x00), body)


class Home(asyncio.Protocol):
    """One simulated home's connection: records the first arrival of each known payload
    (`index_of`: payload to message number) as (message, monotonic ns) in `received`."""

    def __init__(self, index_of: dict[bytes, int], received: list[tuple[int, int]]) -> None:
        self.index_of = index_of
        self.received = received
        self.seen: set[int] = set()
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.acked = 0
        self.closed_by_us = False
        self.lost = asyncio.get_running_loop().create_future()
        self._answer: asyncio.Future[bytes] | None = None
        self._next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        """Note the end; whoever waits on an answer hears why."""
        if not self.lost.done():
            self.lost.set_result(None)
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(MqttWireError(f"connection closed: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        """Parse every whole packet; acknowledge QoS 1 deliveries in one write."""
        now = time.monotonic_ns()
        buf = self.buffer
        buf += data
        pos, size, acks = 0, len(buf), []
        while size - pos >= 2:
            first, value, shift, i = buf[pos], 0, 0, pos + 1
            while i < size:
                byte = buf[i]
                value |= (byte & 0x7F) << shift
                i += 1
                if not byte & 0x80:
                    break
                shift += 7
            else:
                break
            if shift > 21 or value > MAX_PACKET:
                self._fail(f"packet of {value} bytes (bound {MAX_PACKET})")
                return
            end = i + value
            if end > size:
                break
            kind = first >> 4
            if kind == 3:
                start = i + 2 + int.from_bytes(buf[i : i + 2], "big")
                if first & 0x06:
                    acks.append(b"\x40\x02" + buf[start : start + 2])
                    start += 2
                index = self.index_of.get(bytes(buf[start:end]))
                # A redelivery (QoS 1 is at least once) is not a second delivery.
                if index is not None and index not in self.seen:
                    self.seen.add(index)
                    self.received.append((index, now))
            elif kind == 4:
                self.acked += 1
            elif kind in (2, 9) and self._answer is not None and not self._answer.done():
                self._answer.set_result(bytes(buf[i:end]))
            pos = end
        del buf[:pos]
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))

    def _fail(self, reason: str) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(MqttWireError(reason))
        if self.transport is not None:
            self.transport.abort()

    def packet_id(self) -> int:
        """The next packet identifier (1 to 65535)."""
        self._next_id = self._next_id % 65535 + 1
        return self._next_id

    async def _ask(self, packet: bytes) -> bytes:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(packet)
        try:
            return await self._answer
        finally:
            self._answer = None

    async def session(
        self,
        client_id: str,
        login: tuple[str, str] | None,
        topics: Sequence[tuple[str, int]],
        keepalive: int,
    ) -> int:
        """CONNECT (persistent session) and SUBSCRIBE; how many filters SUBACK refused
        (counted, as the edge controller goes on without them); MqttWireError if the
        CONNECT is refused or the SUBACK malformed. The caller bounds the wait."""
        user, password = login if login is not None else (None, None)
        connack = await self._ask(connect_packet(client_id, user, password, keepalive, clean=False))
        if len(connack) < 2 or connack[1] != 0:
            code = connack[1] if len(connack) > 1 else -1
            raise MqttWireError(f"CONNACK refused: {CONNACK_REFUSALS.get(code, code)}")
        suback = await self._ask(subscribe_packet(self.packet_id(), topics))
        if len(suback) != 2 + len(topics):
            raise MqttWireError(f"SUBACK for {len(topics)} filters: {suback.hex()}")
        return suback[2:].count(0x80)

    def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """Send one QoS 1 PUBLISH (its PUBACK is counted in `acked`)."""
        assert self.transport is not None
        self.transport.write(publish_packet(topic, payload, self.packet_id(), retain))

    def ping(self) -> None:
        """PINGREQ, so the broker's keepalive never closes a quiet home."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(PINGREQ)

    def close(self) -> None:
        """DISCONNECT and close (the session stays on the broker)."""
        self.closed_by_us = True
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(DISCONNECT)
            self.transport.close()


async def open_home(
    host: str,
    port: int,
    context: ssl.SSLContext,
    index_of: dict[bytes, int],
    received: list[tuple[int, int]],
) -> Home:
    """A TLS connection to the broker with a `Home` on it (no MQTT session yet)."""
    loop = asyncio.get_running_loop()
    _, home = await loop.create_connection(
        lambda: Home(index_of, received), host, port, ssl=context, server_hostname=host
    )
    return home

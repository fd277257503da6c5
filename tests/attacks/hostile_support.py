"""What the hostile-input attacks share: an attacker on the community broker (fake peers,
garbage), a listener that counts the sync requests homes send, and a log line counter."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiomqtt

from edge_controller.ledger import KeyPair
from edge_controller.network import signed_bytes


def _envelope(kind: str, sender: str, body: dict[str, object]) -> dict[str, object]:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return {
        "v": 1,
        "kind": kind,
        "from": sender,
        "id": hashlib.sha256(canonical).hexdigest(),
        "body": body,
    }


def fake_head(community: str, *, signed: bool, rng: random.Random) -> bytes:
    """A head of an invented node claiming a chain far ahead of everyone's: unsigned with
    a made-up sender id, or signed by a key made up for it (a node nobody knows)."""
    body = {
        "type": "head",
        "height": rng.randint(10**6, 10**7),
        "hash": os.urandom(32).hex(),
        "work": "f" * 40,
    }
    if not signed:
        return json.dumps(_envelope("block", "ep" + os.urandom(20).hex(), body)).encode()
    key = KeyPair.from_seed(os.urandom(16))
    envelope = _envelope("block", key.account, body)
    topic = f"energy-p2p/{community}/blocks"
    message = signed_bytes(topic, key.account, str(envelope["id"]))
    envelope["auth"] = {"key": key.public_hex, "sig": key.sign(message).hex()}
    return json.dumps(envelope).encode()


def garbage(rng: random.Random) -> bytes:
    """A payload that is refused for one reason or another."""
    return rng.choice(
        [
            lambda: os.urandom(rng.randint(1, 200)),
            lambda: b"[" * 3000,
            lambda: b'{"v": 1}',
            lambda: json.dumps(_envelope("record", "ep" + "1" * 40, {"x": 1})).encode(),
            lambda: json.dumps({"v": 2, "kind": "record", "from": "x", "id": "y", "body": {}}),
        ]
    )()  # type: ignore[no-any-return]


@dataclass
class Attacker:
    """A client on the community broker with no key the community knows."""

    port: int
    community: str
    sent: int = 0

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[aiomqtt.Client]:
        async with aiomqtt.Client(
            "127.0.0.1", self.port, identifier=f"attacker-{os.urandom(4).hex()}"
        ) as client:
            yield client

    async def flood(self, seconds: float, kind: str, rate_per_s: int = 2_000) -> None:
        """Publish `kind` ("unsigned_heads", "signed_heads" or "garbage") for `seconds`."""
        rng = random.Random(7)
        base = f"energy-p2p/{self.community}"
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        async with self.connected() as client:
            while loop.time() < end:
                started = loop.time()
                for _ in range(rate_per_s // 20):
                    if kind == "garbage":
                        topic = rng.choice([f"{base}/records", f"{base}/blocks"])
                        payload = garbage(rng)
                    else:
                        topic = f"{base}/blocks"
                        payload = fake_head(self.community, signed=kind == "signed_heads", rng=rng)
                    await client.publish(topic, payload, qos=0)
                    self.sent += 1
                await asyncio.sleep(max(0.0, 0.05 - (loop.time() - started)))


@dataclass
class SyncListener:
    """Counts the sync requests on the broker, by type and by whether a home sent them to a
    node that exists."""

    port: int
    community: str
    homes: set[str]
    requests: Counter[str] = field(default_factory=Counter)
    _task: asyncio.Task[None] | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self._ready.wait(), 10)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _listen(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.subscribe(f"energy-p2p/{self.community}/sync/+", qos=0)
            self._ready.set()
            async for message in client.messages:
                to = str(message.topic).rsplit("/", 1)[-1]
                try:
                    kind = json.loads(bytes(message.payload))["body"]["type"]  # type: ignore[arg-type]
                except (ValueError, KeyError, TypeError):
                    kind = "?"
                self.requests[f"{kind} to {'home' if to in self.homes else 'fake'}"] += 1


class LogLines(logging.Handler):
    """Counts the log lines the edge controller writes at INFO and above."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.by_level: Counter[str] = Counter()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.by_level[record.levelname] += 1
        if record.levelno >= logging.WARNING:
            self.lines.append(record.getMessage()[:200])

    @contextlib.contextmanager
    def attached(self) -> Iterator[LogLines]:
        logger = logging.getLogger("edge_controller")
        level = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.setLevel(level)

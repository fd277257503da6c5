"""Hostile input, in bulk: the API of a home and its MQTT decoder fed what an attacker sends.

`scripts/fuzz` runs it for long (`--api N --decoder N`); the suite runs a bounded
property-based fuzz of the same targets (tests/attacks/test_hostile_input.py). Inputs come
from a seeded generator, so a figure can be reproduced: valid seeds of every request body
and every message kind, mutated one field at a time, plus raw bytes no parser should choke
on (invalid UTF-8, nesting thousands deep, integers of 5,000 digits, lone surrogates).

A finding is a 500 from the API, a WebSocket that breaks the protocol, or a message the
decoder could only refuse through its catch-all (`internal_error`, `handler_error`,
`validator_error`): each is a crash a client could cause.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import random
import string
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from edge_controller.api import ApiServer
from edge_controller.app.home import Home
from edge_controller.devices import SystemClock
from edge_controller.ledger import Consensus, Genesis, KeyPair, sign_record, signing_message
from edge_controller.network import BrokerSettings, Rejection, canonical_json, signed_bytes
from edge_controller.network.defence import SenderRateLimiter

CRASHES = frozenset({Rejection.INTERNAL_ERROR, Rejection.HANDLER_ERROR, Rejection.VALIDATOR_ERROR})
TOKEN = "fuzz-token"

# Leaves an attacker tries where a field is expected: wrong types, edges, odd text.
_TEXTS = [
    "",
    "²",
    "٣",
    "\ud800",
    "a\udfffb",
    "\x00",
    "x" * 5000,
    "é" * 300,
    "../../etc/passwd",
    "%00",
    "NaN",
    "1e999",
    "-1",
    "ep" + "0" * 40,
    "0" * 64,
    "🔋" * 10,
]
_NUMBERS = [0, -1, 1, 2**31, 2**53, 2**53 + 1, 2**63, -(2**63), 10**30, 0.5, -0.0, 1e308]


def hostile_leaf(rng: random.Random) -> Any:
    """One hostile JSON value (no nesting)."""
    pick = rng.random()
    if pick < 0.3:
        return rng.choice(_TEXTS)
    if pick < 0.6:
        return rng.choice(_NUMBERS)
    if pick < 0.7:
        return rng.choice([True, False, None])
    if pick < 0.8:
        return "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 12)))
    if pick < 0.9:
        return rng.randint(-(10**6), 10**6)
    return "".join(chr(rng.randint(0x80, 0x2FFFF)) for _ in range(rng.randint(1, 6)))


def hostile_value(rng: random.Random, depth: int = 0) -> Any:
    """A hostile JSON value: a leaf, or a small list or object of them."""
    pick = rng.random()
    if depth > 3 or pick < 0.7:
        return hostile_leaf(rng)
    if pick < 0.85:
        return [hostile_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {
        rng.choice(["a", "kind", "type", "", "\ud800", "x" * 50]): hostile_value(rng, depth + 1)
        for _ in range(rng.randint(0, 4))
    }


def raw_hostile_bytes(rng: random.Random) -> bytes:
    """Bytes that are not (usable) JSON: each a known way to crash a naive parser."""
    depth = rng.choice([900, 2_000, 50_000])
    digits = rng.choice([4_301, 5_000, 60_000])
    choices: list[Callable[[], bytes]] = [
        lambda: b"[" * depth + b"]" * depth,
        lambda: b'{"a":' * depth + b"1" + b"}" * depth,
        lambda: b'{"quantity": ' + b"9" * digits + b"}",
        lambda: b'{"price": -' + b"1" * digits + b"}",
        lambda: b'{"reason": "\xff\xfe"}',
        lambda: bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))),
        lambda: b'{"reason": "\\ud800"}',
        lambda: b'{"memo": "\\udfff\\ud800"}',
        lambda: b'{"a": NaN}',
        lambda: b'{"a": Infinity}',
        lambda: b'{"a": 1e99999}',
        lambda: b"",
        lambda: b"null",
        lambda: b"[]",
        lambda: b'"text"',
        lambda: b'{"a": 1',
        lambda: b"\xef\xbb\xbf{}",
        lambda: b'{"a": "\x00"}',
    ]
    return rng.choice(choices)()


def mutate(rng: random.Random, seed: dict[str, Any]) -> dict[str, Any]:
    """`seed` with one to three fields changed, removed or added."""
    out = dict(seed)
    for _ in range(rng.randint(1, 3)):
        action = rng.random()
        if out and action < 0.6:
            name = rng.choice(sorted(out))
            out[name] = hostile_value(rng)
        elif out and action < 0.75:
            out.pop(rng.choice(sorted(out)))
        else:
            out[rng.choice(["extra", "kind", "to", "auction", "memo"])] = hostile_value(rng)
    return out


def body_bytes(rng: random.Random, seed: dict[str, Any] | None) -> bytes:
    """A request body: mostly a mutated seed, sometimes raw hostile bytes."""
    if seed is None or rng.random() < 0.25:
        return raw_hostile_bytes(rng)
    document = mutate(rng, seed) if rng.random() < 0.9 else seed
    try:
        return json.dumps(document, ensure_ascii=rng.random() < 0.5).encode(
            "utf-8", "surrogatepass"
        )
    except ValueError:
        return json.dumps(document, ensure_ascii=True, allow_nan=True).encode()


# --- the API -------------------------------------------------------------------------------

BATTERY = "fuzz/battery"


def body_seeds(now: int, account: str) -> dict[str, dict[str, Any]]:
    """A valid body for each route that takes one, by the last word of its path."""
    return {
        "offers": {
            "resource": BATTERY,
            "mode": "energy",
            "quantity": 100,
            "price": 200,
            "start": now + 60_000,
            "end": now + 3_660_000,
            "memo": "ok",
        },
        "accept": {"quantity": 10, "price": 200},
        "reject": {"reason": "too dear"},
        "bids": {"price": 210},
        "requests": {"mode": "energy", "quantity": 100, "max_price": 300},
        "rate": {"score": 5, "comment": "fine"},
        "policy": {"sell": {"auto_sell": False}, "buy": {"auto_accept": False}},
        "records": {"body": {"kind": "topup", "seq": 1, "time": now}, "signer": "", "sig": ""},
        "purchase": {"energy_wh": 10, "wallet": account},
        "pair": {"code": "123456", "fund": 10},
        "{port}": {"enabled": True},
    }


def path_value(rng: random.Random, known: list[str]) -> str:
    """A path parameter: a known id now and then, else something hostile, URL-quoted."""
    if known and rng.random() < 0.3:
        return rng.choice(known)
    value = rng.choice([*_TEXTS, "1", "0", "99999999999999999999", "²", "-3", " 1"])
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


@dataclass
class Findings:
    """What a fuzz run sent and what broke."""

    inputs: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    crashes: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    def crash(self, kind: str, example: str) -> None:
        self.crashes[kind] += 1
        self.examples.setdefault(kind, example[:300])

    def as_dict(self) -> dict[str, Any]:
        return {
            "inputs": self.inputs,
            "seconds": round(self.seconds, 1),
            "statuses": dict(sorted(self.statuses.items())),
            "refused": dict(self.refused.most_common()),
            "crashes": dict(self.crashes),
            "examples": self.examples,
        }


class ExceptionLog(logging.Handler):
    """Collects every logged traceback, by exception type and the logger's message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            self.seen.append(f"{type(error).__name__}: {str(error)[:120]}")

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        return seen


def lone_home(folder: Path, broker: BrokerSettings) -> tuple[Home, KeyPair]:
    """A community of one sealing home with a funded wallet and a certified battery; its
    registrar's key is returned to sign the records that fund it."""
    registrar = KeyPair.generate()
    key = KeyPair.generate()
    now = SystemClock().now_ms()
    genesis = Genesis(
        name="Fuzz Lane",
        currency="TST",
        time=now - 1_000,
        registrars=(registrar.public_hex,),
        consensus=Consensus(mode="poa", block_interval_ms=500, sealers=(key.public_hex,)),
    )
    home = Home(
        name="fuzz",
        data_dir=folder,
        genesis=genesis,
        node_key=key,
        meter_key=KeyPair.generate(),
        community_broker=broker,
        control_interval_ms=1_000,
    )
    return home, registrar


def funding_records(home: Home, registrar: KeyPair) -> list[dict[str, Any]]:
    """The registrar's records that give the home money and a battery to sell from."""
    now = home.now
    community = home.genesis.community_id
    bodies = [
        {"kind": "topup", "seq": 1, "time": now, "to": home.account, "amount": 10**9},
        {
            "kind": "registration",
            "seq": 2,
            "time": now,
            "resource": BATTERY,
            "owner": home.account,
            "resource_kind": "battery",
            "power_w": 5_000,
            "capacity_wh": 10_000,
            "available_wh": 10_000,
        },
    ]
    return [sign_record(registrar, community, body).to_wire() for body in bodies]


async def fuzz_api(
    count: int, seed: int = 0, broker: BrokerSettings | None = None, concurrency: int = 8
) -> Findings:
    """Send `count` hostile requests to every route of a real home's API and its WebSocket."""
    rng = random.Random(seed)
    findings = Findings()
    traces = ExceptionLog()
    # The root logger: aiohttp logs what escapes the API's own error handling.
    logging.getLogger().addHandler(traces)
    with tempfile.TemporaryDirectory() as folder:
        home, registrar = lone_home(
            Path(folder), broker or BrokerSettings(host="127.0.0.1", port=1)
        )
        await home.start()
        server = ApiServer(home, TOKEN)
        await server.start()
        try:
            async with aiohttp.ClientSession() as session:
                auth = {"Authorization": f"Bearer {TOKEN}"}
                for record in funding_records(home, registrar):
                    async with session.post(
                        f"{server.url}/api/v1/records", json=record, headers=auth
                    ) as answer:
                        assert answer.status == 201, await answer.text()
                routes = [
                    (route.method, route.resource.canonical)
                    for route in server.app.router.routes()
                    if route.resource is not None and route.method != "HEAD"
                ]
                started = time.monotonic()
                sender = _ApiSender(session, server.url, home, routes, findings, traces)
                queue: asyncio.Queue[int | None] = asyncio.Queue()
                for i in range(count):
                    queue.put_nowait(i)
                workers = [
                    asyncio.create_task(sender.work(queue, random.Random(rng.random())))
                    for _ in range(concurrency)
                ]
                for _ in workers:
                    queue.put_nowait(None)
                await asyncio.gather(*workers)
                for case in range(max(1, count // 200)):
                    await _fuzz_websocket(session, server.url, random.Random(case), findings)
                findings.seconds = time.monotonic() - started
        finally:
            await server.stop()
            await home.stop()
            logging.getLogger().removeHandler(traces)
    return findings


@dataclass
class _ApiSender:
    session: aiohttp.ClientSession
    url: str
    home: Home
    routes: list[tuple[str, str]]
    findings: Findings
    traces: ExceptionLog
    known_ids: list[str] = field(default_factory=list)

    async def work(self, queue: asyncio.Queue[int | None], rng: random.Random) -> None:
        seeds = body_seeds(self.home.now, self.home.account)
        while (item := await queue.get()) is not None:
            del item
            method, template = rng.choice(self.routes)
            path = template
            for name in ("offer_id", "trade_id", "port"):
                path = path.replace("{" + name + "}", path_value(rng, self.known_ids))
            last = template.rsplit("/", 1)[-1]
            data = body_bytes(rng, seeds.get(last)) if method in ("POST", "PUT") else b""
            headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
            if rng.random() < 0.05:
                headers["Authorization"] = "Bearer " + rng.choice(["é", "²", "токен", "\x7f"])
            query = ""
            if rng.random() < 0.2:
                query = "?" + rng.choice(
                    ["from=" + "9" * 5000, "limit=²", "account=%FF", "from=-1&limit=0", "all=1"]
                )
            await self._send(method, template, path + query, headers, data)

    async def _send(
        self, method: str, template: str, path: str, headers: dict[str, str], data: bytes
    ) -> None:
        self.findings.inputs += 1
        try:
            async with self.session.request(
                method, self.url + path, data=data, headers=headers
            ) as answer:
                text = await answer.text(errors="replace")
                status = answer.status
        except (aiohttp.ClientError, UnicodeError, ValueError) as error:
            # The client itself refused to send it (e.g. a header it cannot encode).
            self.findings.statuses[0] += 1
            del error
            return
        self.findings.statuses[status] += 1
        if status >= 500:
            traces = self.traces.take()
            kind = traces[0].split(":")[0] if traces else "500"
            self.findings.crash(
                f"{method} {template.removeprefix('/api/v1')}: {kind}",
                f"{method} {path} {data[:200]!r} -> {text[:100]} {traces[:1]}",
            )
        elif status == 201 and path.endswith("/offers"):
            offer_id = json.loads(text).get("id")
            if isinstance(offer_id, str):
                self.known_ids.append(offer_id)


async def _fuzz_websocket(
    session: aiohttp.ClientSession, url: str, rng: random.Random, findings: Findings
) -> None:
    """A WebSocket client with a hostile token in the header, the query or the first message:
    the server must answer `hello` or close with 4401, never break the protocol."""
    token = rng.choice(["é", "²", "токен", "\ud800", TOKEN + "é", "", TOKEN])
    # With no token at all the server waits for it as the first message.
    where = "message" if not token else rng.choice(["header", "query", "message"])
    findings.inputs += 1
    headers = {"Authorization": f"Bearer {token}"} if where == "header" else {}
    target = f"{url}/api/v1/ws"
    if where == "query":
        target += "?token=" + quote(token.encode("utf-8", "surrogatepass"), safe="")
    try:
        async with session.ws_connect(target, headers=headers) as ws:
            if where == "message":
                first = rng.choice(
                    [
                        json.dumps({"type": "auth", "token": token}),
                        "[" * 5000 + "]" * 5000,
                        '{"token": ' + "9" * 5000 + "}",
                        "not json",
                    ]
                )
                await ws.send_str(first)
            message = await ws.receive(timeout=5)
            await ws.close()
    except (aiohttp.ClientError, UnicodeError, ValueError):
        findings.statuses[0] += 1
        return
    except TimeoutError:
        findings.crash(f"websocket token in {where}: no answer", repr(token))
        return
    code = ws.close_code
    ok = message.type == aiohttp.WSMsgType.TEXT or code in (None, 4401)
    if message.type == aiohttp.WSMsgType.CLOSE:
        ok = message.data == 4401
    findings.statuses[-1 if ok else -2] += 1
    if not ok:
        findings.crash(
            f"websocket token in {where}", f"{token!r}: {message.type} {message.data} {code}"
        )


# --- the MQTT decoder ----------------------------------------------------------------------


def decoder_cases(
    rng: random.Random, home: Home, keys: list[KeyPair]
) -> Iterator[tuple[str, bytes]]:
    """Topics and payloads for the decoder: hostile envelopes around hostile or signed
    bodies of every kind, and raw garbage."""
    topics = home.link.topics
    community = home.genesis.community_id
    own = home.account
    while True:
        topic = rng.choices(
            [
                topics.records,
                topics.blocks,
                topics.sync(own),
                topics.status(rng.choice([k.account for k in keys])),
                topics.base + "/records/x",
                topics.base + "/sync/\u00e9",
                "elsewhere/records",
            ],
            weights=[35, 25, 25, 5, 4, 3, 3],
        )[0]
        if rng.random() < 0.2:
            yield topic, raw_hostile_bytes(rng)
            continue
        key = rng.choice(keys)
        body = _hostile_body(rng, key, community, home)
        envelope: dict[str, Any] = {
            "v": 1,
            "kind": {"records": "record", "blocks": "block"}.get(
                topic.rsplit("/", 1)[-1], "sync" if "/sync/" in topic else "status"
            ),
            "from": key.account,
            "body": body,
        }
        try:
            envelope["id"] = _id_of(body)
        except ValueError:
            envelope["id"] = "0" * 64
        if envelope["kind"] in ("block", "sync") and rng.random() < 0.7:
            # Signed by the key its sender id derives from, so it reaches the sync handlers.
            signed = signed_bytes(topic, key.account, str(envelope["id"]))
            envelope["auth"] = {"key": key.public_hex, "sig": key.sign(signed).hex()}
        if rng.random() < 0.1:
            envelope = mutate(rng, envelope)
        if "/status/" in topic and rng.random() < 0.7:
            envelope = mutate(
                rng, {"node_id": key.account, "state": "online", "version": "1", "time_ms": 1}
            )
        try:
            payload = canonical_json(envelope)
        except ValueError:
            payload = json.dumps(envelope, allow_nan=True).encode("utf-8", "surrogatepass")
        yield topic, payload


def _id_of(body: Any) -> str:
    return hashlib.sha256(canonical_json(body)).hexdigest()


def _hostile_body(rng: random.Random, key: KeyPair, community: str, home: Home) -> Any:
    head = home.ledger.head
    seeds: list[dict[str, Any]] = [
        {"type": "head", "height": head.height, "hash": head.hash, "work": f"{head.work + 1:x}"},
        {"type": "get_headers", "locator": [head.hash], "limit": 10},
        {"type": "headers", "headers": [{"header": {"prev": head.hash}, "sig": "00"}]},
        {"type": "get_blocks", "hashes": [head.hash]},
        {"type": "blocks", "blocks": [{"header": {}, "records": []}]},
        {"type": "block", "block": {"header": {"height": 1}, "records": [], "sig": "00"}},
        {"type": "record", "record": {"body": {}, "signer": key.public_hex, "sig": "0" * 128}},
    ]
    if rng.random() < 0.5:
        body = {
            "kind": rng.choice(["offer", "accept", "topup", "registration", "rating", "x"]),
            "seq": rng.randint(1, 5),
            "time": home.now,
            "resource": BATTERY,
            "mode": "energy",
            "quantity": 10,
            "price": 1,
            "start": home.now,
            "end": home.now + 1000,
            "expires": home.now,
            "memo": "m",
        }
        body = mutate(rng, body)
        try:
            sig = key.sign(signing_message(community, key.public_hex, canonical_json(body))).hex()
        except ValueError:
            sig = "0" * 128
        wire = {"body": body, "signer": key.public_hex, "sig": sig}
        return wire if rng.random() < 0.6 else {"type": "record", "record": wire}
    seed = rng.choice(seeds)
    return mutate(rng, seed) if rng.random() < 0.8 else seed


async def fuzz_decoder(count: int, seed: int = 0) -> Findings:
    """Hand `count` hostile MQTT messages to a real home's link, ledger node and ledger."""
    rng = random.Random(seed)
    findings = Findings()
    traces = ExceptionLog()
    logging.getLogger("edge_controller").addHandler(traces)
    with tempfile.TemporaryDirectory() as folder:
        home, registrar = lone_home(Path(folder), BrokerSettings(host="127.0.0.1", port=1))
        await home.link.start()
        # No rate limit: the fuzz looks for crashes behind the limiter, not for the limiter.
        home.link._rate_limiter = SenderRateLimiter(1e9, 10**9)
        for record in funding_records(home, registrar):
            home.ledger.submit(record)
        keys = [KeyPair.from_seed(bytes([i])) for i in range(8)]
        started = time.monotonic()
        try:
            cases = decoder_cases(rng, home, keys)
            for _ in range(count):
                topic, payload = next(cases)
                before = sum(home.link.rejections[c] for c in CRASHES)
                await home.link._receive(topic, payload)
                findings.inputs += 1
                after = sum(home.link.rejections[c] for c in CRASHES)
                if after != before:
                    seen = traces.take()
                    findings.crash(seen[0] if seen else "crash", f"{topic} {payload[:200]!r}")
            findings.seconds = time.monotonic() - started
            findings.refused.update(home.link.rejections)
            received = home.link.stats().received
            findings.refused.update({f"accepted:{k}": n for k, n in received.items()})
            findings.refused.update({f"ledger:{k}": n for k, n in home.node.rejections.items()})
            findings.refused.update({f"sync:{k}": n for k, n in home.node.sync.rejected.items()})
        finally:
            await home.link.stop()
            home.ledger.close()
            logging.getLogger("edge_controller").removeHandler(traces)
    return findings


def main(argv: list[str] | None = None) -> int:
    """`scripts/fuzz [--api N] [--decoder N] [--seed S]`: print the findings as JSON; exit 1
    when anything crashed."""
    parser = argparse.ArgumentParser(prog="scripts/fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--api", type=int, default=200_000, help="hostile API requests")
    parser.add_argument("--decoder", type=int, default=1_000_000, help="hostile MQTT messages")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # Only tracebacks are of interest; the link's reconnect warnings are not.
    logging.basicConfig(level=logging.ERROR, handlers=[logging.NullHandler()])
    report: dict[str, Any] = {}
    if args.decoder:
        report["decoder"] = asyncio.run(fuzz_decoder(args.decoder, args.seed)).as_dict()
    if args.api:
        report["api"] = asyncio.run(fuzz_api(args.api, args.seed)).as_dict()
    print(json.dumps(report, indent=2, default=str))
    return 1 if any(part["crashes"] for part in report.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())

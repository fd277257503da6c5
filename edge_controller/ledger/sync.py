"""The sync protocol: how ledger nodes tell each other their heads and fetch what they lack.

Transport-free. A `SyncNode` takes a message from a peer and returns the messages to send,
so the same code runs over MQTT in the edge controller and over an in-memory network in
tests. Messages are JSON objects with a `type`:

- `head`        {height, hash, work}          a node's best chain tip (announced on change
                                                and periodically)
- `get_headers` {locator, limit}               "send me headers after our common block"
- `headers`     {headers: [{header, sig}]}     the answer, oldest first
- `get_blocks`  {hashes}                       "send me these blocks"
- `blocks`      {blocks: [block]}              the answer
- `block`       {block}                        a freshly sealed block, pushed to everyone
- `record`      {record}                       a freshly signed record, pushed to everyone

A node that hears of a head with more work than its own asks that peer for headers from a
block locator (so one round trip finds where the chains part), checks their proof, then
asks for the blocks it lacks in batches. Blocks go through `Ledger.add_block`, which does
the full validation and follows the most-work chain, reorganizing when needed. A chain that
leaves ours below the final height is refused from its headers, and its head is not asked
for again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .block import Block, Header
from .chain import BlockResult, Ledger
from .consensus import proof_is_valid
from .errors import Reason, Rejected
from .records import HEX64, integer, list_of, obj

log = logging.getLogger(__name__)

MAX_HEADERS = 256
MAX_BLOCKS = 32
REQUEST_TIMEOUT_MS = 5_000

Message = dict[str, Any]
Outgoing = tuple[str | None, Message]
"""(peer id, message); a peer id of None means every peer (a broadcast)."""


def _any(path: str, value: Any) -> Any:
    return value


_SHAPES = {
    "head": obj({"type": _any, "height": integer(0, 2**53), "hash": HEX64, "work": _any}),
    "get_headers": obj(
        {"type": _any, "locator": list_of(HEX64, 64), "limit": integer(1, MAX_HEADERS)}
    ),
    "headers": obj({"type": _any, "headers": _any}),
    "get_blocks": obj({"type": _any, "hashes": list_of(HEX64, MAX_BLOCKS)}),
    "blocks": obj({"type": _any, "blocks": _any}),
    "block": obj({"type": _any, "block": _any}),
    "record": obj({"type": _any, "record": _any}),
}
_LIMITS = {"headers": MAX_HEADERS, "blocks": MAX_BLOCKS}


def _work(path: str, value: Any) -> str:
    # Cumulative work outgrows JSON-safe integers under proof of work: it travels as hex.
    if type(value) is not str or not 0 < len(value) <= 80:
        raise Rejected(Reason.MALFORMED, f"{path}: expected cumulative work as a hex string")
    try:
        int(value, 16)
    except ValueError:
        raise Rejected(Reason.MALFORMED, f"{path}: expected hex") from None
    return value


def _list(path: str, value: Any, limit: int) -> list[Any]:
    if type(value) is not list or len(value) > limit:
        raise Rejected(Reason.MALFORMED, f"{path}: expected a list of at most {limit}")
    return value


@dataclass
class PeerView:
    """What we know of one peer."""

    height: int = 0
    head: str = ""
    work: int = 0
    asked_at: int = -1  # when we last asked it for headers or blocks (-1: nothing pending)
    refused: str = ""  # a head whose chain reverts our final blocks: not asked for again


@dataclass(frozen=True)
class SyncProgress:
    """How far this node is behind the best chain its peers announced."""

    height: int
    target: int

    @property
    def synced(self) -> bool:
        return self.height >= self.target

    @property
    def fraction(self) -> float:
        return 1.0 if self.target == 0 else min(1.0, self.height / self.target)


class SyncNode:
    """One ledger's side of the sync protocol."""

    def __init__(self, ledger: Ledger, node_id: str) -> None:
        self.ledger = ledger
        self.node_id = node_id
        self.peers: dict[str, PeerView] = {}
        self.rejected: Counter[str] = Counter()

    # --- what this node says -------------------------------------------------------------

    def head_message(self) -> Message:
        head = self.ledger.head
        return {"type": "head", "height": head.height, "hash": head.hash, "work": f"{head.work:x}"}

    def block_message(self, block: Block) -> Message:
        return {"type": "block", "block": block.to_wire()}

    def record_message(self, wire: dict[str, Any]) -> Message:
        return {"type": "record", "record": wire}

    def progress(self) -> SyncProgress:
        target = max((p.height for p in self.peers.values()), default=0)
        return SyncProgress(self.ledger.height, target)

    # --- what this node hears ------------------------------------------------------------

    def handle(self, peer: str, message: Any, now: int) -> list[Outgoing]:
        """Process one message from `peer`; returns what to send in reply. Malformed or
        invalid input is counted by reason and logged, never raised."""
        try:
            kind = message.get("type") if isinstance(message, dict) else None
            shape = _SHAPES.get(kind) if isinstance(kind, str) else None
            if shape is None:
                raise Rejected(Reason.MALFORMED, "message: unknown or missing type")
            shape("message", message)
            if kind == "head":
                _work("message.work", message["work"])
            if kind in _LIMITS:
                _list(f"message.{kind}", message[kind], _LIMITS[kind])
            handler = getattr(self, f"_on_{kind}")
            replies: list[Outgoing] = handler(peer, message, now)
            return replies
        except Rejected as exc:
            self.rejected[exc.reason.value] += 1
            log.info(
                "sync: %s from %s refused: %s",
                message.get("type") if isinstance(message, dict) else "?",
                peer,
                exc,
            )
            return []

    def tick(self, now: int) -> list[Outgoing]:
        """Periodic work: announce our head, and re-ask a better peer when a request stalled."""
        out: list[Outgoing] = [(None, self.head_message())]
        for peer, view in self.peers.items():
            if view.asked_at >= 0 and now - view.asked_at > REQUEST_TIMEOUT_MS:
                view.asked_at = -1
            if view.work > self.ledger.head.work and view.asked_at < 0 and not self._refused(view):
                out.extend(self._ask_headers(peer, now))
        return out

    @staticmethod
    def _refused(view: PeerView) -> bool:
        return bool(view.refused) and view.refused == view.head

    def request_headers(self, peer: str, now: int) -> list[Outgoing]:
        """Ask `peer` where our chains part (e.g. when it comes online)."""
        return self._ask_headers(peer, now)

    def _peer(self, peer: str) -> PeerView:
        return self.peers.setdefault(peer, PeerView())

    def _ask_headers(self, peer: str, now: int) -> list[Outgoing]:
        self._peer(peer).asked_at = now
        locator = self.ledger.locator()[:64]
        return [(peer, {"type": "get_headers", "locator": locator, "limit": MAX_HEADERS})]

    def _on_head(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        view = self._peer(peer)
        view.height, view.head, view.work = (
            message["height"],
            message["hash"],
            int(message["work"], 16),
        )
        if (
            view.work > self.ledger.head.work
            and view.head not in self.ledger.index
            and view.asked_at < 0
            and not self._refused(view)
        ):
            return self._ask_headers(peer, now)
        return []

    def _on_get_headers(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        headers = self.ledger.headers_after(message["locator"], message["limit"])
        wire = []
        for header in headers:
            block = self.ledger.block(header.hash)
            if block is not None:
                wire.append({"header": header.to_json(), "sig": block.sig.hex()})
        return [(peer, {"type": "headers", "headers": wire})]

    def _on_headers(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        view = self._peer(peer)
        view.asked_at = -1
        wanted: list[str] = []
        prev = ""
        for item in message["headers"]:
            if type(item) is not dict or "header" not in item:
                raise Rejected(Reason.MALFORMED, "headers: expected {header, sig} objects")
            header = Header.from_json(item["header"])
            block_hash = header.hash
            if prev and header.prev != prev:
                raise Rejected(Reason.UNKNOWN_PARENT, "headers do not form a chain")
            if self.ledger.genesis.consensus.mode == "pow" and not proof_is_valid(header):
                raise Rejected(Reason.BAD_PROOF, f"header {block_hash[:12]} lacks its proof")
            if not wanted and block_hash not in self.ledger.index:
                reason = self.ledger.reverts_final(header.prev)
                if reason:
                    view.refused = view.head
                    raise Rejected(Reason.REVERTS_FINAL, f"peer's chain: {reason}")
            prev = block_hash
            if block_hash not in self.ledger.index:
                wanted.append(block_hash)
        if not wanted:
            return []
        view.asked_at = now
        return [(peer, {"type": "get_blocks", "hashes": wanted[:MAX_BLOCKS]})]

    def _on_get_blocks(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        blocks = []
        for block_hash in message["hashes"]:
            block = self.ledger.block(block_hash)
            if block is not None:
                blocks.append(block.to_wire())
        return [(peer, {"type": "blocks", "blocks": blocks})]

    def _on_blocks(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        view = self._peer(peer)
        view.asked_at = -1
        before = self.ledger.head.hash
        # One batch: followed in one step and one transaction (and, with a signature pool,
        # verified on the other cores).
        outcomes = self.ledger.add_blocks(message["blocks"], now)
        out = self._after(peer, outcomes, before, now)
        # Still behind the peer (a long chain comes in batches): ask for the next part.
        if view.work > self.ledger.head.work and view.asked_at < 0 and not self._refused(view):
            out.extend(self._ask_headers(peer, now))
        return out

    def _on_block(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        before = self.ledger.head.hash
        try:
            outcome: BlockResult | Rejected = self.ledger.add_block(message["block"], now)
        except Rejected as exc:
            outcome = exc
        return self._after(peer, [outcome], before, now)

    def _after(
        self, peer: str, outcomes: list[BlockResult | Rejected], before: str, now: int
    ) -> list[Outgoing]:
        """Count refusals, chase missing parents, announce a new head."""
        out: list[Outgoing] = []
        for outcome in outcomes:
            if isinstance(outcome, Rejected):
                self.rejected[outcome.reason.value] += 1
                log.info("sync: block from %s refused: %s", peer, outcome)
            elif outcome.status == "orphan" and self._peer(peer).asked_at < 0:
                out.extend(self._ask_headers(peer, now))
        if self.ledger.head.hash != before:
            out.append((None, self.head_message()))
        return out

    def _on_record(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        self.ledger.submit(message["record"])
        return []

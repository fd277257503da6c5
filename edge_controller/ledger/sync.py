"""The sync protocol: how ledger nodes tell each other their heads and fetch what they lack.

Transport-free. A `SyncNode` takes a message from a peer and returns the messages to send,
so the same code runs over MQTT in the edge controller and over an in-memory network in
tests. Messages are JSON objects with a `type`:

- `head`        {height, hash, work}          a node's best chain tip (announced on change
                                                and periodically)
- `get_headers` {locator, limit}               "send me headers after our common block"
- `headers`     {headers: [{header, sig}]}     the answer, oldest first
- `get_blocks`  {hashes}                       "send me these blocks"
- `blocks`      {blocks: [block]}              the answer: as many whole blocks, in the
                                                order asked, as fit one message
- `block`       {block}                        a freshly sealed block, pushed to everyone
- `record`      {record}                       a freshly signed record, pushed to everyone

A node that hears of a head with more work than its own asks that peer for headers from a
block locator (so one round trip finds where the chains part), checks their proof, then
asks for the blocks it lacks in batches. Blocks go through `Ledger.add_block`, which does
the full validation and follows the most-work chain, reorganizing when needed. A chain that
leaves ours below the final height is refused from its headers, and its head is not asked
for again.

Answers are paged by size: given the transport's message limit, a node answers with the
whole blocks (and headers) that fit one message, and the asker asks again for the rest.
A block always fits one message: genesis (latest rules) and the sealer's budget see to it.

Peers are verified nodes: the transport hands a message on as `verified` only when its
sender signed it with the key its id derives from. Only verified senders become peers.
A member (a sealer, a registrar or an account the ledger knows) is a peer for as long as
it speaks; any other node is a candidate: at most `MAX_CANDIDATES` are kept, at most
`MAX_CANDIDATE_ASKS` asked at once, and its claimed height counts toward `progress` only
once it delivered a block this node connected. A peer silent for `PEER_SILENT_MS` is
forgotten, and so is one that twice left a request unanswered or answered with nothing
that backs the head it claims.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .block import Block, Header
from .canonical import canonical_bytes
from .chain import BlockResult, Ledger
from .consensus import proof_is_valid
from .errors import Reason, Rejected
from .integrity import StorageError
from .parallel import SignaturePool
from .records import HEX64, integer, list_of, obj
from .snapshot import SnapshotJoin, keep_snapshots, serve_snapshot

log = logging.getLogger(__name__)

MAX_HEADERS = 256
MAX_BLOCKS = 32
REQUEST_TIMEOUT_MS = 5_000
# Heads are announced every couple of seconds: a peer this quiet has gone.
PEER_SILENT_MS = 30_000
# Requests a peer left unanswered, or answered without backing its head, before it goes.
MAX_STRIKES = 2
MAX_CANDIDATES = 16
MAX_CANDIDATE_ASKS = 2
# Blocks behind a peer from which a node starts signature workers to catch up, and at or
# below which it stops them: kept to the head, not dropped for the last 64 blocks (a street's
# blocks hold hundreds of records each, so those are much of a short chain).
CATCH_UP_BLOCKS = 64
CAUGHT_UP_BLOCKS = 2

# What the `blocks` and `headers` answers and a `block` push add around what they carry.
BLOCKS_FRAME_BYTES = max(
    len(canonical_bytes({"type": "blocks", "blocks": []})),
    len(canonical_bytes({"type": "block", "block": {}})) - 2,
    len(canonical_bytes({"type": "headers", "headers": []})),
)

Message = dict[str, Any]
Outgoing = tuple[str | None, Message]
"""(peer id, message); a peer id of None means every peer (a broadcast)."""


def _any(path: str, value: Any) -> Any:
    return value


_SHAPES = {
    "head": obj(
        {"type": _any, "height": integer(0, 2**53), "hash": HEX64, "work": _any},
        {"time": integer(0, 2**53)},
    ),
    "get_headers": obj(
        {"type": _any, "locator": list_of(HEX64, 64), "limit": integer(1, MAX_HEADERS)}
    ),
    "headers": obj({"type": _any, "headers": _any}),
    "get_blocks": obj({"type": _any, "hashes": list_of(HEX64, MAX_BLOCKS)}),
    "blocks": obj({"type": _any, "blocks": _any}),
    "block": obj({"type": _any, "block": _any}),
    "record": obj({"type": _any, "record": _any}),
    # Snapshots (`snapshot.py`) and the answer of a node that pruned the blocks asked for.
    "get_snapshot": obj({"type": _any, "block": HEX64, "offset": integer(0, 2**53)}),
    "snapshot": obj(
        {
            "type": _any,
            "block": HEX64,
            "offset": integer(0, 2**53),
            "next": integer(0, 2**53),
            "total": integer(0, 2**53),
            "rows": _any,
        }
    ),
    "no_snapshot": obj({"type": _any, "block": HEX64}),
    "pruned": obj({"type": _any, "hashes": list_of(HEX64, MAX_BLOCKS)}),
}
_LIMITS = {"headers": MAX_HEADERS, "blocks": MAX_BLOCKS, "rows": 1 << 20}
# What a joining node hands its `SnapshotJoin` rather than following blocks itself.
_JOINING = frozenset({"headers", "snapshot", "no_snapshot", "blocks", "block"})
# Blocks a peer said it pruned that a node remembers, so it asks another peer for them.
MAX_LACKS = 4_096


def _work(path: str, value: Any) -> str:
    # Cumulative work outgrows JSON-safe integers under proof of work: it travels as hex.
    if type(value) is not str or not 0 < len(value) <= 80:
        raise Rejected(Reason.MALFORMED, f"{path}: expected cumulative work as a hex string")
    try:
        int(value, 16)
    except ValueError:
        raise Rejected(Reason.MALFORMED, f"{path}: expected hex") from None
    return value


def block_limit(message_limit: int) -> int:
    """The largest block, in bytes on the wire, that a sync message of `message_limit`
    bytes carries (what `Ledger(max_block_wire=...)` takes)."""
    return message_limit - BLOCKS_FRAME_BYTES


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
    # Blocks its headers showed us that we still lack, asked for a page at a time.
    wanted: list[str] = field(default_factory=list)
    heard_at: int = 0  # when it last sent anything
    member: bool = False
    proven: bool = False  # it delivered a block we connected
    strikes: int = 0

    @property
    def counts(self) -> bool:
        """Whether its claimed height counts toward this node's sync progress."""
        return self.member or self.proven

    # It answered a request for headers of ours: a reply, so news from now. A head may
    # be old (queued for us by the broker while we were away) and proves nothing.
    answered: bool = False
    refused: str = ""  # a head whose chain reverts our final blocks: not asked for again
    # Blocks it answered `pruned` for: asked of other peers (an archive node) instead.
    lacks: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class SyncProgress:
    """How far this node is behind the best chain its peers announced.

    Unknown (None) until a peer has answered our request for headers: a node that has
    heard from nobody since it started cannot say it is in sync. Never in sync while a
    peer is known to be ahead."""

    height: int
    target: int
    answered: bool = True
    ahead: bool = False

    @property
    def synced(self) -> bool | None:
        if self.ahead:
            return False
        return None if not self.answered else self.height >= self.target

    @property
    def fraction(self) -> float | None:
        if not self.answered:
            return None
        return 1.0 if self.target == 0 else min(1.0, self.height / self.target)


class SyncNode:
    """One ledger's side of the sync protocol."""

    def __init__(
        self,
        ledger: Ledger,
        node_id: str,
        member: Callable[[str], bool] | None = None,
        message_limit: int | None = None,
        catch_up_workers: int = 0,
    ) -> None:
        """`catch_up_workers`: signature worker processes to run while far behind a peer
        (0: none); `member`: whether a node id is a member of the community (a sealer, a registrar,
        an account the ledger knows); `message_limit`: the most bytes a sync message body
        may take on the transport (None: unbounded); answers are paged to fit it."""
        self.ledger = ledger
        self.node_id = node_id
        self.message_limit = message_limit
        self.peers: dict[str, PeerView] = {}
        self.rejected: Counter[str] = Counter()
        self.pruned = 0
        # By default the ledger says: a sealer or registrar of the genesis, or an account
        # its best chain holds.
        self.is_member = member or ledger.knows_account
        # A new home joining from a snapshot: it takes the headers and snapshot pieces
        # until it is done (installed, or given up for a full replay).
        self.joiner: SnapshotJoin | None = None
        # Signature workers to start while catching up (0: none).
        self.workers = catch_up_workers
        self._own_pool = False

    # --- what this node says -------------------------------------------------------------

    def head_message(self, now: int) -> Message:
        """Our head, stamped with the time it is said: an unchanged head said again is a new
        message (not a duplicate the transport drops), so peers keep hearing from us while
        no block is sealed, and an old head replayed says when it was true."""
        head = self.ledger.head
        return {
            "type": "head",
            "height": head.height,
            "hash": head.hash,
            "work": f"{head.work:x}",
            "time": now,
        }

    def block_message(self, block: Block) -> Message:
        return {"type": "block", "block": block.to_wire()}

    def record_message(self, wire: dict[str, Any]) -> Message:
        return {"type": "record", "record": wire}

    def block_fits(self, block: Block) -> bool:
        """Whether `block` can travel in one message (to push it or to answer with it)."""
        return self.message_limit is None or block.wire_size() <= block_limit(self.message_limit)

    def progress(self) -> SyncProgress:
        """Our height against the highest a peer told us, and whether a peer is ahead: only
        peers that count (members, or nodes that delivered a block we connected)."""
        head = self.ledger.head
        peers = [p for p in self.peers.values() if p.counts]
        target = max((p.height for p in peers), default=0)
        ahead = any(p.work > head.work or p.height > head.height for p in peers)
        answered = any(p.answered for p in peers)
        return SyncProgress(head.height, target, answered=answered, ahead=ahead)

    # --- what this node hears ------------------------------------------------------------

    def handle(self, peer: str, message: Any, now: int, verified: bool = True) -> list[Outgoing]:
        """Process one message from `peer`; returns what to send in reply. Malformed or
        invalid input is counted by reason and logged, never raised.

        An unverified sender (not signed by its key) may only push blocks and records,
        which carry their own signatures; it never becomes a peer."""
        try:
            kind = message.get("type") if isinstance(message, dict) else None
            shape = _SHAPES.get(kind) if isinstance(kind, str) else None
            if shape is None:
                raise Rejected(Reason.MALFORMED, "message: unknown or missing type")
            if not verified and kind not in ("block", "record"):
                raise Rejected(Reason.UNVERIFIED_PEER, f"{kind} from an unverified sender")
            shape("message", message)
            if kind == "head":
                _work("message.work", message["work"])
            for name in ("headers", "blocks", "rows"):
                if name in message:
                    _list(f"message.{name}", message[name], _LIMITS[name])
            if verified:
                self._heard(peer, now)
            elif kind == "block":
                if self.joining:
                    return []
                return self._on_unverified_block(message, now)
            if self.joining and kind in _JOINING:
                return self._to_joiner(peer, kind, message, now)
            handler = getattr(self, f"_on_{kind}")
            replies: list[Outgoing] = handler(peer, message, now)
            return replies
        except StorageError:
            # The store logged it and `Ledger.retry_storage` picks the chain up again.
            return []
        except Rejected as exc:
            self.rejected[exc.reason.value] += 1
            # Counted for `status`; per message only at debug, so a flood writes no log.
            log.debug(
                "sync: %s from %s refused: %s",
                message.get("type") if isinstance(message, dict) else "?",
                peer,
                exc,
            )
            return []

    @property
    def joining(self) -> bool:
        """Whether this node is joining from a snapshot (it follows no blocks meanwhile)."""
        if self.joiner is not None and self.joiner.done:
            self.joiner = None
        return self.joiner is not None and self.joiner.active

    def _to_joiner(self, peer: str, kind: str, message: Message, now: int) -> list[Outgoing]:
        assert self.joiner is not None
        if kind == "headers":
            return self.joiner.on_headers(peer, message["headers"], now)
        if kind in ("snapshot", "no_snapshot"):
            return self.joiner.on_snapshot(peer, message, now)
        return []  # blocks: followed once the join is done

    def tick(self, now: int) -> list[Outgoing]:
        """Periodic work: announce our head, forget silent and failing peers, and re-ask a
        better peer when a request stalled."""
        out: list[Outgoing] = [(None, self.head_message(now))]
        if self.joiner is not None:
            out.extend(self.joiner.tick(now))
        if self.joining:
            return out
        keep_snapshots(self.ledger)
        for peer, view in list(self.peers.items()):
            if view.asked_at >= 0 and now - view.asked_at > REQUEST_TIMEOUT_MS:
                view.asked_at = -1
                self._strike(peer, view)
            elif now - view.heard_at > PEER_SILENT_MS:
                self._forget(peer)
        # The peer that took the node far behind went silent, or the head was reached.
        self._stop_workers_near_head()
        for peer, view in list(self.peers.items()):
            if self._may_ask(view):
                out.extend(self._ask_headers(peer, now))
        # No peer answered yet (a reply was lost): ask one that we are not waiting for.
        if self.progress().fraction is None:
            idle = [peer for peer, view in self.peers.items() if view.asked_at < 0]
            if idle:
                out.extend(self._ask_headers(max(idle, key=lambda p: self.peers[p].work), now))
        return out

    @staticmethod
    def _refused(view: PeerView) -> bool:
        return bool(view.refused) and view.refused == view.head

    def request_headers(self, peer: str, now: int) -> list[Outgoing]:
        """Ask `peer` where our chains part (e.g. when a member comes online)."""
        view = self._peer(peer, now)
        if view is None or view.asked_at >= 0:
            return []
        return self._ask_headers(peer, now)

    @property
    def _waiting(self) -> bool:
        """An empty ledger that may join from a snapshot and has heard no head yet: it asks
        for headers (so it learns whether it is in sync) but for no block until a head
        tells whether the chain is long enough to join from."""
        return self.joiner is not None and self.joiner.phase == "waiting"

    def _heard(self, peer: str, now: int) -> None:
        view = self._peer(peer, now)
        if view is not None:
            view.heard_at = now

    def _peer(self, peer: str, now: int = 0) -> PeerView | None:
        """The view of `peer`, made when it is new; None for a candidate beyond the cap
        (the one heard from longest ago gives way when it has nothing pending)."""
        view = self.peers.get(peer)
        if view is not None:
            return view
        member = self.is_member(peer)
        if not member:
            candidates = [(v.heard_at, p) for p, v in self.peers.items() if not v.member]
            if len(candidates) >= MAX_CANDIDATES:
                _, oldest = min(candidates)
                if self.peers[oldest].asked_at >= 0:
                    return None
                self._forget(oldest)
        view = self.peers[peer] = PeerView(heard_at=now, member=member)
        return view

    def _may_ask(self, view: PeerView) -> bool:
        """Whether to ask `view`'s peer for headers now: it claims more work, nothing is
        pending with it, and (a candidate) few candidates are being asked already."""
        if view.work <= self.ledger.head.work or view.asked_at >= 0:
            return False
        if view.head in self.ledger.index or self._refused(view):
            return False
        if view.member:
            return True
        asking = sum(1 for v in self.peers.values() if not v.member and v.asked_at >= 0)
        return asking < MAX_CANDIDATE_ASKS

    def _strike(self, peer: str, view: PeerView) -> None:
        view.strikes += 1
        if view.strikes >= MAX_STRIKES:
            log.info("sync: forgetting peer %s: %d requests failed", peer[:12], view.strikes)
            self._forget(peer)

    def _forget(self, peer: str) -> None:
        if self.peers.pop(peer, None) is not None:
            self.pruned += 1

    def _ask_headers(self, peer: str, now: int) -> list[Outgoing]:
        view = self._peer(peer, now)
        if view is None:
            return []
        view.asked_at = now
        locator = self.ledger.locator()[:64]
        return [(peer, {"type": "get_headers", "locator": locator, "limit": MAX_HEADERS})]

    def _on_head(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        view = self._peer(peer, now)
        if view is None:
            return []
        view.height, view.head, view.work = (
            message["height"],
            message["hash"],
            int(message["work"], 16),
        )
        if self.joiner is not None and not self.joiner.done:
            out = self.joiner.on_head(peer, view.height, view.head, view.work, now)
            if self.joining:
                return out
        if self._may_ask(view):
            return self._ask_headers(peer, now)
        return []

    def _on_get_headers(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        # As stored: no block is read or parsed to answer.
        wire = []
        size = BLOCKS_FRAME_BYTES
        for item in self.ledger.signed_headers_after(message["locator"], message["limit"]):
            size += len(canonical_bytes(item)) + 1
            if self.message_limit is not None and size > self.message_limit:
                break  # the asker asks again from the last header it got
            wire.append(item)
        return [(peer, {"type": "headers", "headers": wire})]

    def _on_headers(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        view = self.peers.get(peer)
        if view is None or view.asked_at < 0:
            # Answers nobody asked for are not taken: asking is how a peer is rate-limited.
            raise Rejected(Reason.UNASKED, "headers that were not asked for")
        view.answered = True
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
            # A reply (nothing else is taken): it holds this header's block, so is this high.
            view.height = max(view.height, header.height)
            if block_hash not in self.ledger.index and block_hash not in view.lacks:
                wanted.append(block_hash)
        if self._waiting and self.ledger.height == 0:
            return []  # the next head says whether to join from a snapshot or replay
        view.wanted = wanted
        pruned = bool(view.lacks)
        if (
            not wanted
            and not pruned
            and view.work > self.ledger.head.work
            and view.head not in self.ledger.index
        ):
            # It claims more work than we have, yet shows nothing we lack.
            self._strike(peer, view)
        return self._ask_blocks(peer, view, now)

    def _ask_blocks(self, peer: str, view: PeerView, now: int) -> list[Outgoing]:
        if not view.wanted or peer not in self.peers:
            return []
        view.asked_at = now
        return [(peer, {"type": "get_blocks", "hashes": view.wanted[:MAX_BLOCKS]})]

    def _on_get_blocks(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        blocks: list[dict[str, Any]] = []
        pruned: list[str] = []
        size = BLOCKS_FRAME_BYTES
        for block_hash in message["hashes"]:
            block = self.ledger.block(block_hash)
            if block is None:
                if self.ledger.is_pruned(block_hash):
                    pruned.append(block_hash)
                continue
            size += block.wire_size() + (1 if blocks else 0)
            if self.message_limit is not None and size > self.message_limit:
                if not blocks:
                    # Only a block from before the size rules can be this large: answering
                    # nothing lets the asker time out rather than ask again at once.
                    log.warning(
                        "sync: block %s is too large for one message; %s cannot have it",
                        block.hash[:12],
                        peer,
                    )
                    return []
                break  # whole blocks only, in the order asked: the asker asks for the rest
            blocks.append(block.to_wire())
        if pruned:
            # Said plainly, so the asker asks another peer (an archive node) at once; the
            # blocks after them would only wait for their parents.
            return [(peer, {"type": "pruned", "hashes": pruned})]
        return [(peer, {"type": "blocks", "blocks": blocks})]

    def _on_pruned(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        """A peer no longer keeps the blocks we asked for: remember it lacks them and ask
        the other peers ahead of us (no strike: it answered)."""
        view = self.peers.get(peer)
        if view is None or view.asked_at < 0:
            raise Rejected(Reason.UNASKED, "a pruned answer that was not asked for")
        view.asked_at = -1
        if len(view.lacks) + len(message["hashes"]) > MAX_LACKS:
            view.lacks.clear()
        view.lacks.update(message["hashes"])
        view.wanted = [h for h in view.wanted if h not in view.lacks]
        self.rejected[Reason.PRUNED.value] += 1
        out: list[Outgoing] = []
        for other, other_view in self.peers.items():
            if other != peer and self._may_ask(other_view):
                out.extend(self._ask_headers(other, now))
        return out

    def _on_get_snapshot(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        block, offset = message["block"], message["offset"]
        return [(peer, serve_snapshot(self.ledger, block, offset, self.message_limit))]

    def _on_snapshot(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        raise Rejected(Reason.UNASKED, "a snapshot piece that was not asked for")

    _on_no_snapshot = _on_snapshot

    def _on_blocks(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        view = self.peers.get(peer)
        if view is None or view.asked_at < 0:
            raise Rejected(Reason.UNASKED, "blocks that were not asked for")
        view.asked_at = -1
        before = self.ledger.head.hash
        self._start_workers(view)
        # One batch: followed in one step and one transaction (and, with a signature pool,
        # verified on the other cores).
        outcomes = self.ledger.add_blocks(message["blocks"], now)
        out = self._after(peer, outcomes, before, now)
        self._stop_workers_near_head()
        if peer not in self.peers:
            return out
        if not any(isinstance(o, BlockResult) for o in outcomes):
            # Asked for blocks, it sent none that hold.
            view.wanted = []
            self._strike(peer, view)
            return out
        got = {o.block_hash for o in outcomes if isinstance(o, BlockResult)}
        still = [h for h in view.wanted if h not in got and h not in self.ledger.index]
        # A page that brought some of what we asked: ask for the next page of the same list.
        view.wanted = still if len(still) < len(view.wanted) else []
        if view.asked_at < 0 and view.wanted:
            out.extend(self._ask_blocks(peer, view, now))
        # Still behind the peer (a long chain comes in batches): ask for the next part.
        elif view.work > self.ledger.head.work and view.asked_at < 0 and not self._refused(view):
            out.extend(self._ask_headers(peer, now))
        return out

    def _start_workers(self, view: PeerView) -> None:
        """Signature workers from when the node is far behind a peer (catching up)."""
        ledger = self.ledger
        behind = view.height - ledger.head.height > CATCH_UP_BLOCKS
        if behind and ledger.signature_pool is None and self.workers:
            ledger.signature_pool = SignaturePool(self.workers)
            self._own_pool = True

    def _stop_workers_near_head(self) -> None:
        """Stop the workers this node started once no peer that counts is more than a couple
        of blocks ahead (idle, they hold memory a Raspberry Pi lacks); a peer whose chain was
        refused, or one that never delivered, keeps none running."""
        if not self._own_pool:
            return
        height = self.ledger.head.height
        ahead = [v for v in self.peers.values() if v.counts and not self._refused(v)]
        if all(v.height - height <= CAUGHT_UP_BLOCKS for v in ahead):
            self.stop_workers()

    def stop_workers(self) -> None:
        """Stop the signature workers this node started for a catch-up."""
        pool, self.ledger.signature_pool = self.ledger.signature_pool, None
        self._own_pool = False
        if pool is not None:
            pool.close()

    def _on_block(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        before = self.ledger.head.hash
        try:
            outcome: BlockResult | Rejected = self.ledger.add_block(message["block"], now)
        except Rejected as exc:
            outcome = exc
        return self._after(peer, [outcome], before, now)

    def _on_unverified_block(self, message: Message, now: int) -> list[Outgoing]:
        """A block pushed by a sender that did not sign: followed, never chased."""
        before = self.ledger.head.hash
        try:
            self.ledger.add_block(message["block"], now)
        except Rejected as exc:
            self.rejected[exc.reason.value] += 1
        return [(None, self.head_message(now))] if self.ledger.head.hash != before else []

    def _after(
        self, peer: str, outcomes: list[BlockResult | Rejected], before: str, now: int
    ) -> list[Outgoing]:
        """Count refusals, note a peer that delivered, chase missing parents, announce a
        new head."""
        out: list[Outgoing] = []
        view = self.peers.get(peer)
        for outcome in outcomes:
            if isinstance(outcome, Rejected):
                self.rejected[outcome.reason.value] += 1
                log.debug("sync: block from %s refused: %s", peer, outcome)
            elif outcome.status == "connected" and view is not None:
                view.proven = True
                view.strikes = 0
            elif outcome.status == "orphan" and view is not None and view.asked_at < 0:
                out.extend(self._ask_headers(peer, now))
        if self.ledger.head.hash != before:
            out.append((None, self.head_message(now)))
        return out

    def _on_record(self, peer: str, message: Message, now: int) -> list[Outgoing]:
        self.ledger.submit(message["record"], received=True)
        return []

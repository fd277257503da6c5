"""The ledger node: a block tree, the best chain's state, and a pool of waiting records.

`Ledger` is what the rest of the edge controller talks to. It accepts records into its
pool (checking them against the state they would meet), accepts blocks from anywhere,
follows the chain with the most work, rolls state back block by block when a better branch
appears (returning orphaned records to the pool) and seals new blocks when asked. It does
no I/O of its own except through its `Store`, and no networking at all: `sync.py` speaks
for it.

Under proof of authority on the latest rules it also keeps the final height (a block on
which a majority of the sealers sealed later blocks) and never reorganises below it, and
keeps one block per sealer and height: a second one is equivocation, kept as evidence
(`take_evidence`) and dropped unless other nodes have built on it.

With a final height and SQLite behind it, the block index and the best chain by height
are in memory from the final height up only (`index.py`): a year of blocks costs the node
no memory, and a start reads the headers of the last `finality_depth` heights.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .block import (
    ZERO_HASH,
    Block,
    Header,
    block_message,
    parse_block,
    record_root,
    seal,
    search_nonce,
    wire_size_bound,
)
from .checkpoint import CheckpointJob, Checkpoints
from .consensus import (
    IndexEntry,
    authority_rules,
    block_work,
    check_block_size,
    check_header,
    expected_difficulty,
    final_by_depth,
    final_height,
    finality_rules,
    in_turn_sealer,
    may_seal,
    sealed_since,
    sealer_spacing_ms,
    signed_header,
)
from .errors import Reason, Rejected
from .genesis import FOURTH_RULES, THIRD_RULES, Consensus, Genesis
from .index import PAGE, BlockIndex, MainChain
from .integrity import REMEDY, DamagedStore, StorageError, as_hex, changed, row_hash
from .keys import KeyPair, Verifier, account_id
from .parallel import Check, SignaturePool, check_ahead
from .records import Record, parse_record, signing_message
from .rules import (
    BlockContext,
    apply_block,
    apply_record,
    begin_block,
    check_stake,
    sequence_spent,
)
from .sealers import SealerTimeline, planned, ruling
from .state import JournalEntry, PendingState, State
from .store import Commit, MemoryStore, SqliteStore, Store, first_writes

log = logging.getLogger(__name__)

# Reasons a block may be refused now and accepted later: they say nothing about its validity.
_TRANSIENT = frozenset({Reason.TIME_TOO_FAR_AHEAD, Reason.UNKNOWN_PARENT})
# Reasons a pooled record may become valid once another record lands, so it stays pooled.
_WAITING = frozenset(
    {
        Reason.UNKNOWN_OFFER,
        Reason.UNKNOWN_ACCEPTANCE,
        Reason.UNKNOWN_TRADE,
        Reason.UNKNOWN_RESOURCE,
        Reason.UNKNOWN_REQUEST,
        Reason.INSUFFICIENT_FUNDS,
        Reason.BELOW_MIN_BALANCE,
        Reason.NOT_DUE,
        Reason.FROM_THE_FUTURE,
    }
)
MAX_ORPHANS = 256
RECENT_BLOCKS = 64
RECENT_RECORDS = 2_048
POOL_LIMIT = 20_000
POOL_MAX_AGE_MS = 3_600_000
# Pool policy (not consensus): records one account may have waiting in a node's pool, so a
# single key can fill neither a block nor the node's memory. Its bytes are also held to a
# quarter of a block. An honest home issues far fewer between two blocks (a busy hour's
# 2,000 requests a minute is 170 per 5 s block). A home's own node holds the records it
# signs to a part of that share (`OWN_SHARE_PART`): a peer that has not yet seen the block
# that made room at the home still pools each of them, so none acknowledged is dropped.
POOL_PER_ACCOUNT = 256
# A home's own share is this part of what peers pool of one account: the rest is room for
# its records in a block the home has seen and a peer not yet (as many as it had waiting).
OWN_SHARE_PART = 2
# Blocks re-checked at start (Bitcoin Core's -checkblocks): undone and applied again,
# each against the state digest stored with it.
CHECK_BLOCKS = 6
# Blocks one sealer may have at one height: its first, and one more only when other nodes
# built on it (so nodes that saw the two in another order still converge).
MAX_SEALER_SIBLINGS = 2
# Heights of the block index read at start when the final height comes from the sealers
# alone (rules 2); a final height found lower widens it (`_widen_index`).
INDEX_WINDOW = 1_024


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class BlockResult:
    """What became of a block handed to `Ledger.add_block`."""

    status: Literal["connected", "side", "orphan", "known"]
    block_hash: str
    reorg_depth: int = 0
    missing_parent: str = ""


@dataclass
class ChainEvents:
    """Callbacks the app registers to hear about the chain (all optional)."""

    connected: list[Callable[[Block], None]] = field(default_factory=list)
    disconnected: list[Callable[[Block], None]] = field(default_factory=list)
    dropped: list[Callable[[Record, Rejected], None]] = field(default_factory=list)


@dataclass
class BlockBudget:
    """What a block being built may still take: genesis' records and bytes (by its rules'
    measure) and, when the transport bounds it, the bytes a message can carry."""

    consensus: Consensus
    max_wire: int | None = None
    records: int = 0
    measured: int = 400
    wire: int = 0

    def fits(self, record: Record) -> bool:
        """Whether the block can take `record` besides what it holds."""
        c = self.consensus
        bound = wire_size_bound(self.records + 1, self.wire + record.wire_size)
        measured = bound if c.wire_sized else self.measured + record.size
        return (
            self.records < c.max_block_records
            and measured <= c.max_block_bytes
            and (self.max_wire is None or bound <= self.max_wire)
        )

    def add(self, record: Record) -> None:
        """Count `record` in the block."""
        self.records += 1
        self.measured += record.size
        self.wire += record.wire_size


def genesis_entry(genesis: Genesis) -> tuple[Header, IndexEntry]:
    header = Header(
        height=0,
        prev=ZERO_HASH,
        root=record_root([]),
        time=genesis.time,
        difficulty=0,
        nonce=int(genesis.community_id[:15], 16),
        sealer=ZERO_HASH,
    )
    block_hash = header.hash
    entry = IndexEntry(block_hash, ZERO_HASH, 0, genesis.time, 0, ZERO_HASH, 0)
    return header, entry


class Ledger:
    """A validating ledger node for one community."""

    def __init__(
        self,
        genesis: Genesis,
        store: Store | None = None,
        verifier: Verifier | None = None,
        clock: Callable[[], int] = now_ms,
        signature_pool: SignaturePool | None = None,
        max_block_wire: int | None = None,
        pool_per_account: int = POOL_PER_ACCOUNT,
        check_blocks: int = CHECK_BLOCKS,
        snapshot_dir: Path | None = None,
        check_later: bool = False,
    ) -> None:
        """`max_block_wire`: the largest block, in bytes on the wire, the node's transport can
        send (None: no bound); a block this node builds never exceeds it, whatever the
        community's genesis allows. `snapshot_dir`: where the state snapshot of each
        checkpoint is kept for new homes (None: none kept; `open` keeps them beside the
        database). `check_later`: the start reads only the rows not finished and leaves
        the rest of its damage check (the finished rows, the signatures of the blocks it
        re-applies) to `check_after_start`, which the caller runs right after (a node, on
        a thread); otherwise the start runs it itself."""
        self.genesis = genesis
        self.max_block_wire = max_block_wire
        self.community = genesis.community_id
        self.store: Store = store if store is not None else MemoryStore()
        self.verifier = verifier or Verifier()
        self.signature_pool = signature_pool
        self.clock = clock
        self.events = ChainEvents()
        self.state = State()
        _, first = genesis_entry(genesis)
        # Kept in memory from the final height up; below it read from storage on demand.
        self.index = self._new_index()
        # Blocks with no child: the candidates for the best chain's tip.
        self.tips: set[str] = set()
        self.main = self._new_main(first.hash)
        # Fork choice kept as blocks arrive: the valid block with the most work.
        self._best: IndexEntry | None = None
        # Proof of authority, latest rules: no reorganisation at or below this height.
        self.final_height = 0
        self._authority = authority_rules(genesis)
        # Rules 3 on, either mode: a final height by depth too (`consensus.final_by_depth`).
        self._finality = finality_rules(genesis)
        stored = self.store.state_in_order if isinstance(self.store, SqliteStore) else None
        self.checkpoints = Checkpoints(genesis, snapshot_dir, stored)
        # The highest block whose body and undo data this node never had (a snapshot's
        # base) or has pruned: nothing at or below it is undone or re-checked.
        self.base_height = 0
        # Rules 3: the sealer set in force at each block, on every branch (`sealers.py`).
        self.sealer_timeline = SealerTimeline(genesis, self.index, self.ancestor)
        # Hashes each sealer signed at each height above the final one (equivocation).
        self._slots: dict[int, dict[str, list[str]]] = {}
        self._pruned_to = 0
        # Evidence of equivocation, by sealer, not yet taken by the node to be recorded.
        self._evidence: dict[str, dict[str, Any]] = {}
        self._reported: set[str] = set()
        self.pool: dict[str, Record] = {}
        self._pool_added: dict[str, int] = {}
        self.pool_per_account = pool_per_account
        self._pool_bytes_per_account = genesis.consensus.max_block_bytes // 4
        # Each account's pooled record ids, kept with the pool so a cap costs no scan.
        self._pooled_by: dict[str, dict[str, None]] = {}
        self._registrars = frozenset(account_id(k) for k in genesis.registrars)
        self._orphans: dict[str, Block] = {}
        # Blocks just received, so following them needs no second read and parse from disk.
        self._recent: dict[str, Block] = {}
        self._recent_records = 0
        self._unstored: dict[str, Block] = {}
        self._pending: tuple[PendingState, BlockContext] | None = None
        self._session_connected: set[str] = set()
        self._session_disconnected: set[str] = set()
        # The digest of the best chain's state (integrity.py), kept when the store keeps them.
        self.state_digest = 0
        self._check_later = check_later
        # Blocks re-applied at start whose signatures `check_after_start` checks.
        self._unverified: list[Block] = []
        consensus = genesis.consensus
        self._members = {account_id(k) for k in (*genesis.registrars, *consensus.sealers)}
        self._add_entry(first)
        self._keep_cold()
        self._load(check_blocks)
        self._update_final()
        self._note_side_changes()

    @classmethod
    def open(
        cls, path: Path | str, genesis: Genesis, deferred_sync: bool = False, **kwargs: Any
    ) -> Ledger:
        """A ledger backed by the SQLite file at `path` (created if missing); checkpoint
        snapshots are kept in the folder beside it named as it is, `.snapshots` for its
        suffix (`ledger.snapshots` for `ledger.sqlite3`). `deferred_sync`: see
        `SqliteStore`; the caller then calls `sync` before it acknowledges a block or a
        record of its own."""
        path = Path(path)
        kwargs.setdefault("snapshot_dir", path.with_suffix(".snapshots"))
        return cls(genesis, store=SqliteStore(path, deferred_sync=deferred_sync), **kwargs)

    @property
    def unsynced(self) -> bool:
        """Whether the ledger wrote something `sync` has yet to make durable."""
        return self.store.unsynced

    def sync(self) -> None:
        """Make what the ledger wrote so far durable (a no-op unless storage defers it).
        Raises `StorageError` when the disk refuses."""
        self.store.sync()

    def close(self) -> None:
        self.store.close()

    def _new_index(self) -> BlockIndex:
        store = self.store
        return BlockIndex(store if isinstance(store, SqliteStore) else None)

    def _new_main(self, genesis_hash: str) -> MainChain:
        store = self.store
        source = store.main_hashes if isinstance(store, SqliteStore) else None
        return MainChain(genesis_hash, source)

    @property
    def children(self) -> dict[str, list[str]]:
        """The children of each block in memory (a SQLite-backed node: those above the
        final height)."""
        return self.index.children

    @property
    def storage_failure(self) -> StorageError | None:
        """The storage's last failure, until a write succeeds again (None: it works)."""
        return self.store.failure

    def retry_storage(self) -> None:
        """After a storage failure: try a small write, then the change of best chain and
        the side blocks that could not be written. Raises `StorageError` while it fails."""
        if self.store.failure is None or isinstance(self.store.failure, DamagedStore):
            return
        self.store.probe()
        self._follow_best()
        self._store_unconnected()

    # --- reading ------------------------------------------------------------------------------

    @property
    def head(self) -> IndexEntry:
        return self.index[self.main[-1]]

    @property
    def height(self) -> int:
        return len(self.main) - 1

    def block(self, block_hash: str) -> Block | None:
        return self.store.get_block(block_hash)

    def block_at(self, height: int) -> Block | None:
        if 0 < height < len(self.main):
            return self.store.get_block(self.main[height])
        return None

    def ancestor(self, entry: IndexEntry, height: int) -> IndexEntry:
        """`entry`'s ancestor at `height` (a lookup when `entry` is on the best chain)."""
        if entry.height < len(self.main) and self.main[entry.height] == entry.hash:
            return self.index[self.main[height]]
        while entry.height > height:
            entry = self.index[entry.prev]
        return entry

    def is_recorded(self, record_id: str) -> bool:
        """Whether a record is in the best chain (as of the change being applied)."""
        if record_id in self._session_connected:
            return True
        if record_id in self._session_disconnected:
            return False
        return self.store.is_recorded(record_id)

    def locator(self) -> list[str]:
        """Hashes of the best chain, dense near the tip and sparse toward genesis, so a
        peer can find where our chains part in one message (Bitcoin's block locator)."""
        hashes, step, height = [], 1, self.height
        while height > 0:
            hashes.append(self.main[height])
            if len(hashes) >= 10:
                step *= 2
            height -= step
        hashes.append(self.main[0])
        return hashes

    def fork_point(self, locator: list[str]) -> int:
        """The height of the first locator hash on our best chain (0: genesis)."""
        for block_hash in locator:
            entry = self.index.get(block_hash)
            if entry and entry.height < len(self.main) and self.main[entry.height] == block_hash:
                return entry.height
        return 0

    def headers_after(self, locator: list[str], limit: int) -> list[Header]:
        start = self.fork_point(locator) + 1
        headers = []
        for block_hash in self.main[start : start + limit]:
            signed = self.signed_header(block_hash)
            if signed is not None:
                headers.append(signed[0])
        return headers

    def signed_header(self, block_hash: str) -> tuple[Header, bytes] | None:
        """A block's header and its sealer's signature, also when its body is pruned."""
        block = self._recent.get(block_hash) or self._unstored.get(block_hash)
        if block is not None:
            return block.header, block.sig
        return self.store.get_header(block_hash)

    def is_pruned(self, block_hash: str) -> bool:
        """Whether this node knows the block but no longer keeps (or never had) its body."""
        return block_hash in self.index and self.store.is_pruned(block_hash)

    def signed_headers_after(self, locator: list[str], limit: int) -> list[dict[str, Any]]:
        """Up to `limit` best-chain headers after the locator's fork point, each as
        {header, sig} in wire form, as storage holds them (no block is parsed)."""
        start = self.fork_point(locator) + 1
        hashes = self.main[start : start + limit]
        stored = self.store.signed_headers(hashes)
        unstored = [h for h in hashes if h not in stored]
        for block_hash in unstored:
            block = self._unstored.get(block_hash) or self._recent.get(block_hash)
            if block is not None:
                stored[block_hash] = {"header": block.header.to_json(), "sig": block.sig.hex()}
        return [stored[h] for h in hashes if h in stored]

    # --- records ------------------------------------------------------------------------------

    def next_context(self, now: int | None = None) -> BlockContext:
        head = self.head
        return BlockContext(
            genesis=self.genesis,
            height=head.height + 1,
            time=max(self.clock() if now is None else now, head.time),
            sealer="",
            is_recorded=self.is_recorded,
        )

    def submit(self, wire: Any, own: bool = False, received: bool = False) -> Record:
        """Check a record (JSON form or `Record`) and add it to the pool.

        It is checked against the state it would meet in the next block: the best chain's
        state with the pool's records applied before it. Raises `Rejected` with the reason.
        A record that waits on something not yet known (its offer, funds) is refused too:
        the caller learns why at once instead of the record lingering. `own`: this node
        signed it and is about to send it; its account then gets only its own share of the
        pool (`OWN_SHARE_PART`), so every peer has room for it on arrival. `received`: a
        peer sent it (peers hold it too), so it is written to disk with the next block,
        not at once.
        """
        record = wire if isinstance(wire, Record) else parse_record(wire, self.community)
        if record.id in self.pool:
            return record
        if self.is_recorded(record.id):
            raise Rejected(Reason.DUPLICATE, f"record {record.id[:12]} is already recorded")
        pending, ctx = self._pending_view()
        # The cheap refusals first: a key nobody funded, or one with its share of the pool
        # waiting, costs no signature check.
        check_stake(pending, record, ctx)
        self._check_pool_share(record, OWN_SHARE_PART if own else 1)
        record.verify(self.community, self.verifier)
        pending, ctx = self._pending_view()
        apply_record(pending, record, ctx)
        # Applied records leave nothing in the journal to undo: the view only grows.
        pending.journal.clear()
        try:
            self._pool_put(record, ctx.time, durable=not received)
        except Rejected:
            self._forget_pending()  # the view holds a record the pool could not take
            raise
        return record

    def submit_all(self, records: Sequence[Record], own: bool = False) -> None:
        """`submit` each of `records` in order, all or none: when one is refused, those
        pooled before it are taken back out (`withdraw`) and its refusal is raised. (A
        disk that refuses to let one go keeps it pooled, as `withdraw` says.)"""
        taken: list[Record] = []
        try:
            for record in records:
                if record.id in self.pool:
                    raise Rejected(Reason.DUPLICATE, f"record {record.id[:12]} is already pooled")
                taken.append(self.submit(record, own=own))
        except (Rejected, StorageError):
            for record in reversed(taken):
                with contextlib.suppress(StorageError):
                    self.withdraw(record.id)
            raise

    def pending_seq(self, account: str) -> int:
        """The highest sequence number of `account` in the best chain or the pool."""
        view, _ = self._pending_view()
        return view.account(account).seq

    def knows_account(self, account: str) -> bool:
        """Whether the best chain holds `account` (a sealer's and a registrar's count too)."""
        if account in self._members or self.state.accounts.get(account) is not None:
            return True
        return bool(self.state.sealer_plan.rows) and account in {
            account_id(k) for k in planned(self.state, self.genesis)
        }

    # --- the sealer set (rules 3) ------------------------------------------------------------

    @property
    def _quorum(self) -> int:
        """Distinct sealers on top of a block that make it final: a majority of the set in
        force at the head."""
        return self.sealer_timeline.in_force(self.head).quorum

    def sealer_set(self, entry: IndexEntry | None = None) -> tuple[str, ...]:
        """The sealer keys in force for the block after `entry` (default: the head), in
        turn order."""
        return self.sealer_timeline.after(self.head if entry is None else entry).sealers

    def is_sealer(self, key_hex: str) -> bool:
        """Whether `key_hex` may seal the next block by the set in force (any key under
        proof of work)."""
        return self.genesis.consensus.mode == "pow" or key_hex in self.sealer_set()

    def planned_sealers(self) -> tuple[str, ...]:
        """The sealer set once every change the best chain recorded is in force."""
        return planned(self.state, self.genesis)

    def _ruling(self, parent: IndexEntry) -> Genesis:
        """Genesis with the sealer set in force for the block after `parent`."""
        return ruling(self.genesis, self.sealer_set(parent))

    def _note_stored_changes(self) -> None:
        """At start: the sealer changes the best chain's blocks recorded, from the state,
        and the view after the first block in memory worked out from them, so that no
        walk of the timeline goes below it (`SealerTimeline.seed`)."""
        heights = []
        for height, row in self.state.sealer_changes.rows.items():
            if int(height) < len(self.main):
                heights.append(int(height))
                self.sealer_timeline.note_changes(self.main[int(height)], int(height), row.keys)
        start = min(self.index.floor, self.height)
        if heights and start > 0:
            self.sealer_timeline.seed(self._main_entry, start, heights)

    def _main_entry(self, height: int) -> IndexEntry:
        return self.index[self.main[height]]

    def _note_side_changes(self) -> None:
        """At start: the sealer changes of stored side-branch blocks above the final height
        (a branch below it can never be followed)."""
        if self.genesis.consensus.rules < THIRD_RULES:
            return
        for tip in list(self.tips):
            entry = self.index[tip]
            while (
                entry.height > self.final_height
                and self.main[min(entry.height, len(self.main) - 1)] != entry.hash
            ):
                block = None if entry.invalid else self.store.get_block(entry.hash)
                if block is not None:
                    self.sealer_timeline.note_block(entry.hash, entry.height, block.records)
                entry = self.index[entry.prev]

    def prune_pool(self, now: int | None = None) -> list[Record]:
        """Drop the pooled records the best chain now refuses for good (an offer sold
        meanwhile, a sequence made stale), telling the `dropped` listeners, as a sealer
        does when it builds a block. Records that may still become valid stay."""
        ctx = self.next_context(now)
        view = PendingState(self.state)
        begin_block(view, ctx)
        dropped = []
        for record, exc in list(self._apply_pool(ctx, state=view)):
            if exc is None:
                continue
            added = self._pool_added.get(record.id, ctx.time)
            if exc.reason not in _WAITING or ctx.time - added > POOL_MAX_AGE_MS:
                self._pool_drop(record, exc)
                dropped.append(record)
        return dropped

    def _pending_view(self) -> tuple[PendingState, BlockContext]:
        """The pool's records applied over the best chain's state, for the next block."""
        now = self.clock()
        if self._pending is None:
            ctx = self.next_context(now)
            view = PendingState(self.state)
            begin_block(view, ctx)
            for _record, _why in self._apply_pool(ctx, state=view):
                pass
            view.journal.clear()
            self._pending = (view, ctx)
        view, ctx = self._pending
        ctx.time = max(ctx.time, now)
        return view, ctx

    def _forget_pending(self) -> None:
        self._pending = None

    def _apply_pool(
        self, ctx: BlockContext, budget: BlockBudget | None = None, state: State | None = None
    ) -> Iterator[tuple[Record, Rejected | None]]:
        """Apply pooled records to the state in pool order, yielding each with its rejection
        (None when applied). Records that wait on a later one (an acceptance pooled before
        its offer after a reorg) get further passes while passes make progress."""
        target = self.state if state is None else state
        pending = _pool_order(list(self.pool.values()))
        while pending:
            waiting: list[tuple[Record, Rejected]] = []
            for record in pending:
                if budget is not None and not budget.fits(record):
                    # A full block: what this pass refused for good is still reported, or
                    # it would linger in the pool until it went stale for its sequence.
                    yield from ((r, why) for r, why in waiting if why.reason not in _WAITING)
                    return
                try:
                    apply_record(target, record, ctx)
                except Rejected as exc:
                    waiting.append((record, exc))
                    continue
                if budget is not None:
                    budget.add(record)
                yield record, None
            if len(waiting) == len(pending):
                yield from waiting
                return
            pending = [r for r, why in waiting if why.reason in _WAITING]
            yield from ((r, why) for r, why in waiting if why.reason not in _WAITING)

    def _check_pool_share(self, record: Record, part: int = 1) -> None:
        """Refuse `record` when its account already has its share of the pool waiting
        (`part`: the share divided by it, for records this node signs). Registrars are
        exempt: they certify a whole community at once and already hold the power to
        issue its money."""
        who = record.account
        pooled = self._pooled_by.get(who)
        if pooled is None or who in self._registrars:
            return
        count, size = self.pool_per_account // part, self._pool_bytes_per_account // part
        if not self._within_share(pooled, record, count, size):
            self._drop_spent(who)
            pooled = self._pooled_by.get(who, {})
        if self._within_share(pooled, record, count, size):
            return
        if part == 1:
            raise Rejected(
                Reason.POOL_ACCOUNT_FULL,
                f"{who} has {len(pooled)} records waiting for a block; at most {count}"
                f" ({size} bytes)",
            )
        raise Rejected(
            Reason.POOL_ACCOUNT_FULL,
            f"{len(pooled)} records of {who} wait for a block; a home sends at most {count}"
            f" ({size} bytes) ahead of the blocks, 1/{part} of what peers pool of one"
            " account, so each reaches them; try again once the next block holds some",
        )

    def _within_share(self, pooled: dict[str, None], record: Record, count: int, size: int) -> bool:
        if len(pooled) >= count:
            return False
        return record.size + sum(self.pool[r].size for r in pooled) <= size

    def _drop_spent(self, who: str) -> None:
        """Drop `who`'s pooled records whose sequence the chain has used or left behind:
        no block can hold them any more (a node that does not seal keeps them otherwise)."""
        account = self.state.account(who)
        for record_id in list(self._pooled_by.get(who, {})):
            record = self.pool[record_id]
            if sequence_spent(account, record.seq):
                why = Rejected(Reason.STALE_SEQUENCE, f"sequence {record.seq} of {who} is spent")
                self._pool_drop(record, why)

    def _pool_insert(self, record: Record, now: int) -> None:
        self.pool[record.id] = record
        self._pool_added[record.id] = now
        self._pooled_by.setdefault(record.account, {})[record.id] = None

    def _pool_remove(self, record: Record) -> None:
        if self.pool.pop(record.id, None) is None:
            return
        self._pool_added.pop(record.id, None)
        pooled = self._pooled_by.get(record.account)
        if pooled is not None:
            pooled.pop(record.id, None)
            if not pooled:
                del self._pooled_by[record.account]

    def _pool_put(self, record: Record, now: int, durable: bool = True) -> None:
        if len(self.pool) >= POOL_LIMIT:
            raise Rejected(Reason.OVERSIZE, "the record pool is full; try again shortly")
        try:
            # On disk first: a record the disk refused is not pooled, so never sealed.
            self.store.pool_add(record, now, durable)
        except StorageError:
            self._forget_pending()
            raise
        self._pool_insert(record, now)

    def withdraw(self, record_id: str) -> None:
        """Take a pooled record back (it could not be sent, so its submitter was told no).
        Raises `StorageError` when the disk keeps it: it would come back after a restart."""
        record = self.pool.get(record_id)
        if record is None:
            return
        self._forget_pending()
        self._pool_remove(record)
        self.store.pool_remove([record_id])

    def _pool_drop(self, record: Record, why: Rejected) -> None:
        self._forget_pending()
        self._pool_remove(record)
        # Kept on disk when the disk refuses: dropped again at the next start.
        with contextlib.suppress(StorageError):
            self.store.pool_remove([record.id])
        log.info("dropped record %s (%s): %s", record.id[:12], record.kind, why)
        for callback in self.events.dropped:
            callback(record, why)

    # --- blocks -------------------------------------------------------------------------------

    def add_block(self, wire: Any, now: int | None = None) -> BlockResult:
        """Validate a block (JSON form or `Block`) and follow it if it makes the best chain.

        Raises `Rejected` with the reason when the block (or one of its records) is invalid.
        A block whose parent is unknown is kept aside and reported as an orphan, with the
        hash the caller should ask peers for.
        """
        block = wire if isinstance(wire, Block) else parse_block(wire, self.community)
        now = self.clock() if now is None else now
        early = self._admit(block, now, self._has_orphan_child(block.hash))
        if early is not None:
            return early
        depth = self._follow_best()
        self._store_unconnected()
        return self._outcome(block, depth, now)

    def add_blocks(self, wires: list[Any], now: int | None = None) -> list[BlockResult | Rejected]:
        """Add several blocks in order (a batch from sync), each with its own outcome.

        The batch is followed in one step and written in one transaction. With a signature
        pool its signatures are verified on the other cores, and each block that extends the
        chain is applied to the state as soon as its own signatures are in, while the workers
        verify the next ones (`_Ahead`), so catching up is not bound to one core.
        """
        now = self.clock() if now is None else now
        pending: list[tuple[Block, Callable[[], None]] | Rejected] = []
        for wire in wires:
            try:
                block = wire if isinstance(wire, Block) else parse_block(wire, self.community)
            except Rejected as exc:
                pending.append(exc)
                continue
            checks = _signature_checks(self.community, block)
            pending.append((block, check_ahead(self.verifier, self.signature_pool, checks)))
        outcomes: list[BlockResult | Rejected] = []
        admitted: list[tuple[int, Block]] = []
        parents = {item[0].prev for item in pending if not isinstance(item, Rejected)}
        ahead = None
        if self.signature_pool is not None:
            ahead = _Ahead(self.state.mark(), self.state_digest, self.main[-1])
        try:
            for item in pending:
                if isinstance(item, Rejected):
                    outcomes.append(item)
                    continue
                block, wait = item
                wait()
                try:
                    followed = block.hash in parents or self._has_orphan_child(block.hash)
                    early = self._admit(block, now, followed)
                except Rejected as exc:
                    outcomes.append(exc)
                    continue
                if early is None:
                    admitted.append((len(outcomes), block))
                    early = BlockResult("side", block.hash)
                    if ahead is not None:
                        self._connect_ahead(ahead, block)
                outcomes.append(early)
        except BaseException:
            if ahead is not None:
                self._drop_ahead(ahead)
            raise
        if admitted:
            depth = self._follow_best(ahead)
            self._store_unconnected()
            for position, block in admitted:
                try:
                    outcomes[position] = self._outcome(block, depth, now)
                except Rejected as exc:
                    outcomes[position] = exc
        return outcomes

    def _connect_ahead(self, ahead: _Ahead, block: Block) -> None:
        """Apply `block` to the state now, if it extends what `ahead` applied; the change of
        best chain that follows takes it as applied. A block the rules refuse is undone and
        ends the run: that change applies it again, and refuses it, as without `ahead`."""
        if not ahead.open or block.prev != ahead.tip:
            ahead.open = False
            return
        block_mark = self.state.mark()
        self._session_connected = ahead.connected
        try:
            self._apply_block(block)
        except Rejected:
            self.state.revert(block_mark)
            ahead.open = False
            ahead.connected = {r.id for b, _, _ in ahead.blocks for r in b.records}
            return
        finally:
            self._session_connected = set()
        entries = self.state.journal[block_mark:]
        digest = ""
        if self.store.keeps_digests:
            ahead.digest = changed(ahead.digest, first_writes(entries), True)
            digest = as_hex(ahead.digest)
        ahead.blocks.append((block, entries, digest))
        ahead.tip = block.hash

    def _drop_ahead(self, ahead: _Ahead | None) -> None:
        """Undo what `ahead` applied (the best chain went another way, or a failure)."""
        if ahead is not None and ahead.blocks:
            self.state.revert(ahead.mark)
            ahead.blocks.clear()
        if ahead is not None:
            ahead.open = False

    def _has_orphan_child(self, block_hash: str) -> bool:
        return any(b.prev == block_hash for b in self._orphans.values())

    def _admit(self, block: Block, now: int, followed: bool = False) -> BlockResult | None:
        """Check a block against its parent and index it (None); or say it is known or an
        orphan. Raises `Rejected` when it is invalid. Its records are checked when followed.
        `followed`: a block built on this one came with it (equivocation keeps such a one)."""
        known = self.index.get(block.hash)
        if known is not None:
            if known.invalid:
                raise Rejected(Reason.KNOWN_INVALID, f"block {block.hash[:12]}: {known.invalid}")
            return BlockResult("known", block.hash)
        parent = self.index.get(block.prev)
        if parent is None:
            if len(self._orphans) >= MAX_ORPHANS:
                self._orphans.pop(next(iter(self._orphans)))
            self._orphans[block.hash] = block
            return BlockResult("orphan", block.hash, missing_parent=block.prev)
        if parent.invalid:
            raise self._invalid(block, Rejected(Reason.KNOWN_INVALID, "its parent is invalid"))
        try:
            if self._finality:
                self._check_final(parent)
            if self._authority:
                self._check_sibling(block, followed)
            self._check_block(block, parent, now)
        except Rejected as exc:
            raise self._invalid(block, exc) from None
        self._add_entry(
            IndexEntry(
                hash=block.hash,
                prev=block.prev,
                height=block.height,
                time=block.header.time,
                difficulty=block.header.difficulty,
                sealer=block.header.sealer,
                work=parent.work + block_work(self.genesis, block.header.difficulty),
            )
        )
        self.sealer_timeline.note_block(block.hash, block.height, block.records)
        # Written to disk with the change of best chain that connects it (one transaction),
        # or on its own if it stays on a side branch.
        self._unstored[block.hash] = block
        self._recent[block.hash] = block
        self._recent_records += len(block.records)
        # Bounded by records too: a street's large blocks would otherwise hold megabytes.
        while len(self._recent) > RECENT_BLOCKS or (
            self._recent_records > RECENT_RECORDS and len(self._recent) > 1
        ):
            oldest = self._recent.pop(next(iter(self._recent)))
            self._recent_records -= len(oldest.records)
        return None

    def _outcome(self, block: Block, depth: int, now: int) -> BlockResult:
        entry = self.index[block.hash]
        if entry.invalid:
            # A wrong checkpoint is the header's fault, not a record's: said by its own code.
            checkpoint = entry.invalid.startswith(Reason.BAD_CHECKPOINT.value)
            reason = Reason.BAD_CHECKPOINT if checkpoint else Reason.INVALID_RECORD
            raise Rejected(reason, f"block {block.hash[:12]}: {entry.invalid}")
        on_main = block.height < len(self.main) and self.main[block.height] == block.hash
        result = BlockResult("connected" if on_main else "side", block.hash, reorg_depth=depth)
        self._adopt_orphans(block.hash, now)
        return result

    def _store_unconnected(self) -> None:
        """Write the valid blocks that did not join the best chain (side branches); one the
        disk refuses stays in memory for `retry_storage`."""
        for block_hash, block in list(self._unstored.items()):
            entry = self.index[block_hash]
            if not entry.invalid:
                try:
                    self.store.put_block(block, entry)
                except StorageError:
                    continue
            del self._unstored[block_hash]

    def _invalid(self, block: Block, exc: Rejected) -> Rejected:
        # Equivocating siblings are reported once, with their evidence, not one by one.
        if exc.reason not in _TRANSIENT and exc.reason is not Reason.EQUIVOCATION:
            log.warning("invalid block %s: %s", block.hash[:12], exc)
        return exc

    def _check_final(self, parent: IndexEntry) -> None:
        """Refuse a block whose chain does not hold the final block: following it would
        undo what a majority of the sealers has sealed on, whatever its weight."""
        final = self.final_height
        if parent.height < final or (self.ancestor(parent, final).hash != self.main[final]):
            raise Rejected(
                Reason.REVERTS_FINAL,
                f"the block's chain leaves ours below the final height {final}",
            )

    def reverts_final(self, parent_hash: str) -> str:
        """Why a block on `parent_hash` would be refused for undoing final blocks ("" when
        it would not, or when the parent is unknown)."""
        parent = self.index.get(parent_hash)
        if parent is None or not self._finality:
            return ""
        try:
            self._check_final(parent)
        except Rejected as exc:
            return exc.message
        return ""

    def _check_sibling(self, block: Block, followed: bool) -> None:
        """A second block of one sealer at one height is equivocation: keep the evidence
        (once per sealer) and drop the block, before any costly check, unless others built
        on it (then it is checked as any block; at most two per sealer and height)."""
        sealer = block.header.sealer
        known = self._slots.get(block.height, {}).get(sealer)
        if not known:
            return
        if sealer not in self._reported and sealer not in self._evidence:
            first = self._recent.get(known[0]) or self.store.get_block(known[0])
            if first is not None:
                block.check_signature(self.verifier)
                self._evidence[sealer] = {
                    "first": signed_header(first.header, first.sig),
                    "second": signed_header(block.header, block.sig),
                }
                log.warning(
                    "sealer %s signed two blocks at height %d: %s and %s",
                    sealer[:12],
                    block.height,
                    known[0][:12],
                    block.hash[:12],
                )
        if followed and len(known) < MAX_SEALER_SIBLINGS:
            return
        raise Rejected(
            Reason.EQUIVOCATION,
            f"sealer {sealer[:12]} already signed block {known[0][:12]} at {block.height}",
        )

    def take_evidence(self) -> list[dict[str, Any]]:
        """Equivocation evidence found since the last call, each the body of an
        `equivocation` record ({first, second}: two signed headers); once per sealer."""
        found = list(self._evidence.values())
        self._reported.update(self._evidence)
        self._evidence.clear()
        return found

    def _update_final(self) -> None:
        """Move the final height up to what the best chain's sealers have sealed on."""
        if not self._finality:
            return
        by_sealers = final_height(self.head, self._quorum, self.ancestor) if self._authority else 0
        by_depth = final_by_depth(self.genesis, self.height)
        self.final_height = max(self.final_height, self.base_height, by_sealers, by_depth)
        self.sealer_timeline.forget_below(self.final_height)
        # Slots at or below the final height cannot take a new block any more.
        if self.final_height + 1 - self._pruned_to > len(self._slots):
            self._slots = {h: s for h, s in self._slots.items() if h > self.final_height}
        else:
            for height in range(self._pruned_to, self.final_height + 1):
                self._slots.pop(height, None)
        self._pruned_to = max(self._pruned_to, self.final_height + 1)
        # Below the final block nothing is followed again: its index stays in storage.
        self.tips.difference_update(self.index.forget_below(self.final_height))
        self.main.forget_below(self.final_height)

    def _check_block(self, block: Block, parent: IndexEntry, now: int) -> None:
        c = self.genesis.consensus
        check_block_size(c, block)
        if block.header.time > now + c.max_future_ms:
            raise Rejected(Reason.TIME_TOO_FAR_AHEAD, "the block's time is too far ahead")
        if record_root([r.id for r in block.records]) != block.header.root:
            raise Rejected(Reason.BAD_RECORD_ROOT, "the record root does not match the records")
        check_header(self._ruling(parent), block.header, block.hash, parent, self.ancestor)
        block.check_signature(self.verifier)
        for record in block.records:
            record.verify(self.community, self.verifier)

    def _add_entry(self, entry: IndexEntry) -> None:
        self.index.add(entry)
        self.tips.discard(entry.prev)
        # In any order (a widened index adds parents after their children).
        if not self.children.get(entry.hash):
            self.tips.add(entry.hash)
        if entry.height > self.final_height:
            slot = self._slots.setdefault(entry.height, {})
            slot.setdefault(entry.sealer, []).append(entry.hash)
        if not entry.invalid and (self._best is None or entry.better_than(self._best)):
            self._best = entry

    def _adopt_orphans(self, parent_hash: str, now: int) -> None:
        waiting = [b for b in self._orphans.values() if b.prev == parent_hash]
        for block in waiting:
            self._orphans.pop(block.hash, None)
            try:
                self.add_block(block, now)
            except Rejected as exc:
                log.info("orphan %s refused: %s", block.hash[:12], exc)

    def _best_tip(self) -> IndexEntry:
        """The valid block with the most work, kept as blocks arrive (a child always has
        more work than its parent, so it is a tip or the last valid block below one)."""
        if self._best is None or self._best.invalid:
            self._best = self._scan_best()
        return self._best

    def _scan_best(self) -> IndexEntry:
        """Fork choice from scratch, after blocks were found invalid."""
        best = self.head
        for tip in self.tips:
            entry = self.index[tip]
            while entry.invalid:
                entry = self.index[entry.prev]
            if entry.better_than(best):
                best = entry
        return best

    def _follow_best(self, ahead: _Ahead | None = None) -> int:
        """Reorganize onto the best valid tip; returns how many blocks were rolled back.
        `ahead`: blocks already applied to the state (`add_blocks`), taken by the first
        change of best chain when they start its branch, undone otherwise."""
        depth_total = 0
        while True:
            best = self._best_tip()
            if best.hash == self.main[-1]:
                self._drop_ahead(ahead)
                return depth_total
            depth, failed = self._reorganize(best, ahead)
            ahead = None
            depth_total = max(depth_total, depth)
            if failed is None:
                return depth_total

    def _mark_invalid(self, block_hash: str, reason: str) -> None:
        stack = [block_hash]
        while stack:
            h = stack.pop()
            entry = self.index[h]
            if not entry.invalid:
                entry.invalid = reason
                # Unmarked on disk, it is checked and refused again at the next start.
                with contextlib.suppress(StorageError):
                    self.store.mark_invalid(h, reason)
            elif h != block_hash:
                continue  # marked with its descendants already
            stack.extend(self.children.get(h, []))

    def _reorganize(
        self, target: IndexEntry, ahead: _Ahead | None = None
    ) -> tuple[int, str | None]:
        """Switch the best chain to end at `target`, atomically. On a bad block, restore the
        old chain, mark the block (and its descendants) invalid and return its hash.
        `ahead`: blocks `add_blocks` applied already; used when they start the branch."""
        branch: list[IndexEntry] = []
        entry = target
        while not (entry.height < len(self.main) and self.main[entry.height] == entry.hash):
            branch.append(entry)
            entry = self.index[entry.prev]
        fork_height = entry.height
        branch.reverse()
        prepared = ahead.blocks if ahead is not None else []
        if prepared and (
            fork_height != len(self.main) - 1
            or [e.hash for e in branch[: len(prepared)]] != [b.hash for b, _, _ in prepared]
        ):
            self._drop_ahead(ahead)
        if self._finality and fork_height < self.final_height:
            self._drop_ahead(ahead)
            reason = f"{Reason.REVERTS_FINAL.value}: it forks below the final height"
            # The whole branch, from its tip: below the final height no children are in
            # memory to walk up from its first block.
            for entry in reversed(branch):
                self._mark_invalid(entry.hash, reason)
            return 0, branch[0].hash
        mark = self.state.mark()
        commit = Commit(head=target.hash)
        self._session_connected = set()
        self._session_disconnected = set()
        disconnected_blocks: list[Block] = []
        digests = self.store.keeps_digests
        digest = self.state_digest
        if ahead is not None and prepared:
            # Applied as their signatures came in: taken as they are.
            mark, digest = ahead.mark, ahead.digest
            self._session_connected = set(ahead.connected)
            for block, entries, block_digest in prepared:
                commit.connected.append((block, entries))
                if digests:
                    commit.digests[block.hash] = block_digest
                if block.hash in self._unstored:
                    commit.new_blocks.append((block, self.index[block.hash]))
        try:
            for height in range(len(self.main) - 1, fork_height, -1):
                block_hash = self.main[height]
                block = self._load_block(block_hash)
                undo = self.store.get_undo(block_hash, self.state)
                if digests:
                    digest = changed(digest, undo, forward=False)
                self.state.undo_entries(undo)
                self._session_disconnected.update(r.id for r in block.records)
                commit.disconnected.append(block_hash)
                disconnected_blocks.append(block)
            for new in branch[len(prepared) :]:
                block = self._load_block(new.hash)
                block_mark = self.state.mark()
                try:
                    self._apply_block(block)
                except Rejected as exc:
                    self.state.revert(mark)
                    reason = f"{exc.reason.value}: {exc.message}"
                    log.warning("block %s at %d is invalid: %s", new.hash[:12], new.height, reason)
                    self._mark_invalid(new.hash, reason)
                    return 0, new.hash
                commit.connected.append((block, self.state.journal[block_mark:]))
                if digests:
                    digest = changed(digest, first_writes(self.state.journal[block_mark:]), True)
                    commit.digests[block.hash] = as_hex(digest)
                if new.hash in self._unstored:
                    commit.new_blocks.append((self._unstored[new.hash], new))
            commit.journal = self.state.journal[mark:]
            self.store.commit(commit)
            self.state.evict(commit.journal, target.time)
        except BaseException:
            self.state.revert(mark)
            raise
        finally:
            self._session_connected = set()
            self._session_disconnected = set()
        del self.state.journal[mark:]
        self.state_digest = digest
        for block, _ in commit.new_blocks:
            self._unstored.pop(block.hash, None)
        del self.main[fork_height + 1 :]
        self.main.extend(e.hash for e in branch)
        self._update_final()
        self._after_reorg(disconnected_blocks, [b for b, _ in commit.connected])
        return len(disconnected_blocks), None

    def _load_block(self, block_hash: str) -> Block:
        block = (
            self._unstored.get(block_hash)
            or self._recent.get(block_hash)
            or self.store.get_block(block_hash)
        )
        if block is None:
            raise RuntimeError(f"block {block_hash} is indexed but not stored")
        return block

    def _apply_block(self, block: Block) -> None:
        ctx = BlockContext(
            genesis=self.genesis,
            height=block.height,
            time=block.header.time,
            sealer=block.header.sealer_account,
            is_recorded=self.is_recorded,
        )
        self.checkpoints.check(block, self.state)
        self.sealer_timeline.note_block(block.hash, block.height, block.records)
        apply_block(self.state, block.records, ctx, self._note_connected)

    def _note_connected(self, record: Record) -> None:
        self._session_connected.add(record.id)

    def _after_reorg(self, disconnected: list[Block], connected: list[Block]) -> None:
        self._forget_pending()
        included = {r.id for b in connected for r in b.records}
        for block in connected:
            for record in block.records:
                self._pool_remove(record)
        now = self.clock()
        for block in disconnected:
            for record in block.records:
                if record.id not in included and record.id not in self.pool:
                    self._pool_insert(record, now)
                    # Refused by the disk, it is still in the side branch's stored block.
                    with contextlib.suppress(StorageError):
                        self.store.pool_add(record, now, durable=False)
            for callback in self.events.disconnected:
                callback(block)
        for block in connected:
            for callback in self.events.connected:
                callback(block)

    # --- sealing ------------------------------------------------------------------------------

    def can_seal(self, key: KeyPair, now: int | None = None) -> bool:
        """Whether `key` may seal the next block at `now`: its turn rules, and on the latest
        rules its spacing since its previous block and no recorded equivocation."""
        head = self.head
        if not may_seal(self._ruling(head), head, key.public_hex, self.ancestor):
            return False
        if not self._authority:
            return True
        if key.account in self.state.suspended:
            return False
        time_ms = max(self.clock() if now is None else now, head.time)
        spacing = sealer_spacing_ms(self.genesis)
        return sealed_since(head, key.public_hex, time_ms - spacing, self.ancestor) < 0

    def in_turn(self, key: KeyPair) -> bool:
        """Proof of authority: whether `key` is the in-turn sealer of the next block."""
        if self.genesis.consensus.mode != "poa":
            return True
        return in_turn_sealer(self._ruling(self.head), self.height + 1) == key.public_hex

    def first_in_line(self, key: KeyPair) -> bool:
        """Whether `key` is the sealer expected to seal the next block: the in-turn one, or,
        when that one may not (it sealed one of the last blocks, or is suspended), the first
        after it in the rotation that may. Without this, two sealers stay locked out of
        turn after one out-of-turn block: each next in-turn sealer is the one just barred."""
        if self.genesis.consensus.mode != "poa":
            return True
        genesis = self._ruling(self.head)
        sealers = genesis.consensus.sealers
        first = (self.height + 1) % len(sealers)
        for step in range(len(sealers)):
            candidate = sealers[(first + step) % len(sealers)]
            barred = self._authority and account_id(candidate) in self.state.suspended
            if not barred and may_seal(genesis, self.head, candidate, self.ancestor):
                return candidate == key.public_hex
        return False

    def build_block(
        self, key: KeyPair, now: int | None = None, max_tries: int = 1 << 62
    ) -> Block | None:
        """Seal the next block from the pool (proof of work searches up to `max_tries`
        nonces). None when `key` may not seal now or the search ran out of tries.

        Pool records the state refuses are dropped, with their reason reported to the
        `dropped` listeners, unless they may become valid later (e.g. their offer is not
        in the chain yet).
        """
        if not self.can_seal(key, now):
            return None
        head = self.head
        time_ms = max(self.clock() if now is None else now, head.time)
        ctx = BlockContext(
            genesis=self.genesis,
            height=head.height + 1,
            time=time_ms,
            sealer=key.account,
            is_recorded=self.is_recorded,
        )
        c = self.genesis.consensus
        chosen: list[Record] = []
        budget = BlockBudget(c, self.max_block_wire)
        mark = self.state.mark()
        try:
            begin_block(self.state, ctx)
            for record, exc in self._apply_pool(ctx, budget):
                if exc is None:
                    chosen.append(record)
                    continue
                added = self._pool_added.get(record.id, time_ms)
                if exc.reason not in _WAITING or time_ms - added > POOL_MAX_AGE_MS:
                    self._pool_drop(record, exc)
        finally:
            self.state.revert(mark)
        header = Header(
            height=head.height + 1,
            prev=head.hash,
            root=record_root([r.id for r in chosen]),
            time=time_ms,
            difficulty=expected_difficulty(self._ruling(head), head, key.public_hex, self.ancestor),
            nonce=0,
            sealer=key.public_hex,
            checkpoint=self.checkpoint_for(head.height + 1),
        )
        if c.mode == "pow":
            found = search_nonce(header, max_tries=max_tries)
            if found is None:
                return None
            header = found
        return seal(header, tuple(chosen), key)

    def checkpoint_for(self, height: int) -> str:
        """The checkpoint a block at `height` on the head carries ("" between checkpoints)."""
        if not self.checkpoints.due(height):
            return ""
        return self.checkpoints.digest_after(self.head.hash, height, self.state)

    def checkpoint_job(self) -> CheckpointJob | None:
        """When the next block carries a checkpoint not yet known: its work for another
        thread, reading the state committed after the head from SQLite (the node starts it
        as soon as the head commits). None: nothing to do, or the ledger is not on SQLite
        or holds writes not committed (the block then computes it in line)."""
        height = self.height + 1
        if not self.checkpoints.due(height) or self.state.journal:
            return None
        if not isinstance(self.store, SqliteStore):
            return None
        return self.checkpoints.job(self.store.path, self.head.hash, height)

    # --- start-up -----------------------------------------------------------------------------

    def _load(self, check_blocks: int, installed: bool = False) -> None:
        snapshot = self.store.open(self.community, self._index_window())
        if snapshot is None:
            return
        self.base_height = self.store.base_height()
        for entry in snapshot.entries:
            self._add_entry(entry)
        self.index.floor = snapshot.main_from
        self.main.reset(snapshot.main_from, snapshot.main)
        if snapshot.main_from > 1:
            self.tips.discard(self.main[0])  # genesis' children stay in storage
        digests = self.store.keeps_digests
        # The rows not finished; the finished ones' share of the digest comes stored, and
        # `check_after_start` checks it against their rows.
        total = snapshot.cold_digest
        tables = {t.name: t for t in self.state.tables()}
        for name, key, value in snapshot.state_rows:
            try:
                table = tables[name]
                row = table.unpack(key, value)
                if table.finished is None or not table.finished(key, row):
                    table.rows[key] = row
            except (KeyError, TypeError, ValueError) as exc:
                raise self._damaged(
                    f"state row {name}/{key[:16]} is unreadable ({exc!r})"
                ) from None
            if digests:
                total += row_hash(name, key, value)
        self._note_stored_changes()
        if digests:
            self.state_digest = total % (1 << 256)
            self._check_stored_state(check_blocks)
            # Rows just installed were hashed against their checkpoint: no second pass.
            if not self._check_later and not installed:
                self.check_after_start()
        now = self.clock()
        for wire in snapshot.pool:
            try:
                record = parse_record(wire, self.community)
            except Rejected:
                continue
            self._pool_insert(record, now)
        self._widen_index()
        # A block stored just before a crash may be better than the committed head.
        self._follow_best()

    def _index_window(self) -> int | None:
        """The heights below the head whose index a start reads (None: all): every block
        above the final height, which by depth (rules 3) is at most `finality_depth`
        below the head; the rest waits in storage until asked for."""
        if not self._finality or not isinstance(self.store, SqliteStore):
            return None
        c = self.genesis.consensus
        return max(c.finality_depth, CHECK_BLOCKS + 1) if c.rules >= THIRD_RULES else INDEX_WINDOW

    def _widen_index(self) -> None:
        """At start: read the index down to the head's final height when the window read
        stops above it (the sealers left blocks unfinal for longer than the window), so
        every block a fork may still leave from is in memory, with its branches' tips."""
        floor = self.index.floor
        if not self._finality or floor <= 1:
            return
        by_sealers = final_height(self.head, self._quorum, self.ancestor) if self._authority else 0
        final = max(self.base_height, by_sealers, final_by_depth(self.genesis, self.height))
        if final >= floor:
            return
        low = max(final, 1)
        store = self.store
        assert isinstance(store, SqliteStore)  # a window is read from SQLite only
        for entry in store.index_entries(low, floor):
            self._add_entry(entry)
        self.index.floor = low
        self.main.widen(low, store.main_hashes(low, floor))

    def check_after_start(self, stop: threading.Event | None = None) -> bool:
        """The part of the start's damage check left for after it (`check_later`): the
        signatures of the blocks it re-applied, and the finished state rows, which it
        does not read, against their share of the digest stored with the head. Safe on a
        thread of its own while the node runs; returns False when `stop` cut it short.
        Raises `DamagedStore` (and `storage_failure` says so) on a difference."""
        blocks, self._unverified = self._unverified, []
        # A verifier of its own: the node's cache is not shared across threads.
        verifier = Verifier(cache_size=0)
        for block in blocks:
            if stop is not None and stop.is_set():
                return False
            try:
                block.check_signature(verifier)
                for record in block.records:
                    record.verify(self.community, verifier)
            except Rejected as exc:
                error = self._damaged(
                    f"stored block {block.height} is invalid ({exc.reason.value}: {exc.message})"
                )
                log.error("ledger storage: %s", error.message)
                self.store.failure = error
                raise error from None
        if isinstance(self.store, SqliteStore):
            return self.store.check_cold(stop)
        return True

    def _damaged(self, what: str) -> DamagedStore:
        where = getattr(self.store, "path", "the ledger")
        return DamagedStore(f"{where}: {what}; {REMEDY}")

    def _check_stored_state(self, depth: int) -> None:
        """At start: the stored state against the digest stored with the head, then the
        last `depth` blocks undone and applied again, each against its stored digest.
        Raises `DamagedStore` naming what differs."""
        head = self.main[-1]
        stored = self.store.digest_of(head) if len(self.main) > 1 else as_hex(0)
        if stored is None:
            if self.store.digest_of(self.index[head].prev) is not None:
                raise self._damaged(f"the state digest of block {self.height} is missing")
            # Written before digests existed: from now on this state is the reference.
            self.store.set_digest(head, as_hex(self.state_digest))
            return
        if stored != as_hex(self.state_digest):
            raise self._damaged(
                f"the stored state differs from the digest stored with block {self.height} "
                f"{head[:16]} (a row was changed or damaged)"
            )
        heights = range(self.height, max(self.base_height, self.height - depth), -1)
        if not heights:
            return
        mark = self.state.mark()
        digest = self.state_digest
        blocks: list[Block] = []
        height = self.height
        try:
            for height in heights:
                block = self._load_block(self.main[height])
                self._unverified.append(block)
                undo = self.store.get_undo(block.hash, self.state)
                digest = changed(digest, undo, forward=False)
                self.state.undo_entries(undo)
                self._session_disconnected.update(r.id for r in block.records)
                parent = self.store.digest_of(block.prev) if height > 1 else as_hex(0)
                if parent is not None and parent != as_hex(digest):
                    raise self._damaged(
                        f"the undo data of block {height} {block.hash[:16]} does not lead "
                        "to the state stored with its parent"
                    )
                blocks.append(block)
            for block in reversed(blocks):
                height = block.height
                block_mark = self.state.mark()
                self._apply_block(block)
                digest = changed(digest, first_writes(self.state.journal[block_mark:]), True)
                expected = self.store.digest_of(block.hash)
                if expected is not None and expected != as_hex(digest):
                    raise self._damaged(
                        f"block {height} {block.hash[:16]} does not lead to the state stored "
                        "with it"
                    )
        except Rejected as exc:
            raise self._damaged(
                f"stored block {height} is invalid ({exc.reason.value}: {exc.message})"
            ) from None
        finally:
            self._session_connected = set()
            self._session_disconnected = set()
        self.state.evict(self.state.journal[mark:], self.head.time)
        del self.state.journal[mark:]

    def _keep_cold(self) -> None:
        if isinstance(self.store, SqliteStore):
            # Finished rows live on disk only: memory stays flat as the chain ages.
            self.state.keep_cold(self.store.load_row, self.store.scan_rows)
            if self.genesis.consensus.rules >= FOURTH_RULES:
                # Sweeps read the rows due from the store's index of close times.
                self.store.forgets = True
                self.state.closed_query = self.store.closed_rows

    def reload(self) -> None:
        """Forget everything held in memory and read the store again (after a snapshot was
        installed into it). The pool is read back from the store as at a start."""
        self._forget_pending()
        self.state = State()
        self._keep_cold()
        _, entry = genesis_entry(self.genesis)
        self.index, self.tips = self._new_index(), set()
        self.main = self._new_main(entry.hash)
        self.sealer_timeline = SealerTimeline(self.genesis, self.index, self.ancestor)
        self._best = None
        self.final_height = self.base_height = self._pruned_to = 0
        self._slots = {}
        self.pool, self._pool_added, self._pooled_by = {}, {}, {}
        self._orphans, self._recent, self._unstored = {}, {}, {}
        self.state_digest = 0
        self._add_entry(entry)
        self._load(0, installed=True)
        self._update_final()

    def iter_main(self, start: int = 1) -> Iterator[Block]:
        """The best chain's blocks from height `start` on, read a page of hashes at a time."""
        for low in range(start, len(self.main), PAGE):
            for block_hash in self.main[low : low + PAGE]:
                yield self._load_block(block_hash)


@dataclass
class _Ahead:
    """Blocks of a batch applied to the state as soon as their signatures were in, while
    the signature workers verified the next ones: each with its journal slice and the
    state digest after it ("" when the store keeps none)."""

    mark: int  # the journal before the first of them
    digest: int  # the state digest after the last
    tip: str  # the block the next one must build on
    blocks: list[tuple[Block, list[JournalEntry], str]] = field(default_factory=list)
    connected: set[str] = field(default_factory=set)  # their record ids
    open: bool = True


def _signature_checks(community: str, block: Block) -> list[Check]:
    checks: list[Check] = [
        (r.signer, r.sig, signing_message(community, r.signer, r.body_bytes)) for r in block.records
    ]
    checks.append((block.header.sealer, block.sig, block_message(block.hash)))
    return checks


def _pool_order(records: list[Record]) -> list[Record]:
    """Arrival order, except that each account's records go in sequence order: a later
    sequence sealed first would make the earlier one a stale replay."""
    by_account: dict[str, list[Record]] = {}
    for record in records:
        by_account.setdefault(record.account, []).append(record)
    for queue in by_account.values():
        queue.sort(key=lambda r: r.seq, reverse=True)
    return [by_account[r.account].pop() for r in records]

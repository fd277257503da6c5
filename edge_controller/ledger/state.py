"""The ledger's state: what the chain implies right now, kept in journaled tables.

State is a handful of key-value tables (accounts, resources, offers, trades, ...). Every
write goes through `Table.put`, which remembers the value it replaced in the journal. The
journal is what makes the state machine reversible: a block's undo data is the slice of
the journal its records wrote, and a failed block or a reorg is undone by replaying the
journal backwards. The same journal tells storage which rows changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .records import MAX_WINDOW_MS

V = TypeVar("V")
R = TypeVar("R")
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def evolve(row: R, **changes: Any) -> R:
    """A copy of a frozen row with some fields changed: `dataclasses.replace` without its
    per-call introspection, which is a tenth of the ledger's time on the hot path."""
    cls = type(row)
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    copy = object.__new__(cls)
    for name in names:
        object.__setattr__(copy, name, changes[name] if name in changes else getattr(row, name))
    return copy


class _Missing:
    """Marks a row that did not exist before a write (so undo deletes it)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
_NO_DEFAULT: Any = object()
# Finished rows (a settled trade, a closed offer) stay in memory this long of chain time.
FINISHED_HOT_MS = 3_600_000
_ROW_ENCODER = json.JSONEncoder(separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Account:
    """A participant's wallets: currency (milli-units) and energy (Wh) plus reputation."""

    balance: int = 0
    escrow: int = 0
    seq: int = 0
    seq_window: int = 0
    energy_in_wh: int = 0
    energy_out_wh: int = 0
    rating_sum: int = 0
    rating_count: int = 0


@dataclass(frozen=True, slots=True)
class Resource:
    """A licensed energy resource, as certified by a registrar."""

    id: str
    kind: str
    owner: str
    power_w: int
    capacity_wh: int
    available_wh: int
    committed_wh: int = 0
    meter: str = ""
    location: str = ""
    registered_at: int = 0


@dataclass(frozen=True, slots=True)
class Offer:
    """An offer to sell a resource's energy (Wh) or capacity (W over a window)."""

    id: str
    seller: str
    resource: str
    mode: str
    quantity: int
    remaining: int
    price: int
    start: int
    end: int
    expires: int
    to: tuple[str, ...] = ()
    min_quantity: int = 1
    request: str = ""
    auction_closes: int = 0
    auction_cap: int = 0
    best_bid: str = ""
    best_bidder: str = ""
    best_bid_price: int = 0
    best_bid_cost: int = 0
    status: str = "open"
    time: int = 0

    @property
    def is_auction(self) -> bool:
        return self.auction_closes > 0


@dataclass(frozen=True, slots=True)
class Request:
    """A consumer's energy request, answered by (possibly private) offers."""

    id: str
    buyer: str
    mode: str
    quantity: int
    max_price: int
    start: int
    end: int
    expires: int


@dataclass(frozen=True, slots=True)
class Acceptance:
    """A conditional acceptance (counter-offer) waiting for the seller's confirmation."""

    id: str
    offer: str
    buyer: str
    quantity: int
    price: int
    status: str = "pending"


@dataclass(frozen=True, slots=True)
class Trade:
    """The transaction binding an offer and an acceptance, from creation to settlement."""

    id: str
    offer: str
    seller: str
    buyer: str
    resource: str
    mode: str
    quantity: int
    price: int
    start: int
    end: int
    energy_wh: int
    cost: int
    time: int
    # Wh of the resource's stored energy this trade holds (0 for a PV capacity sale); kept
    # so a later re-registration cannot change what its release gives back.
    committed_wh: int = 0
    status: str = "active"
    delivered_wh: int = 0
    paid: int = 0
    refunded: int = 0
    buyer_rating: int = -1
    seller_rating: int = -1
    # The buyer's own measurement when it disputes the delivery (-1: no dispute).
    disputed_wh: int = -1


@dataclass(frozen=True, slots=True)
class MeterLog:
    """The running totals of a resource's signed meter readings."""

    count: int = 0
    last_end: int = 0
    export_wh: int = 0
    import_wh: int = 0


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One signed meter reading, with the export total before it (for window sums)."""

    start: int
    end: int
    export_wh: int
    import_wh: int
    export_before: int


@dataclass(frozen=True, slots=True)
class Vouched:
    """An account a registrar stands behind (a top-up to it, or a resource registered to
    it), from the block at `height` on: its ratings may count (latest rules)."""

    height: int


@dataclass(frozen=True, slots=True)
class Funding:
    """Money one account has sent another by transfers (latest rules): a rating of the
    sender by the receiver does not count."""

    amount: int


@dataclass(frozen=True, slots=True)
class PendingFee:
    """Fees of one block, paid to its sealer once enough blocks confirm it."""

    sealer: str
    amount: int


@dataclass(frozen=True, slots=True)
class Totals:
    """Community-wide counters (money issued, fees paid) used by invariant checks."""

    issued: int = 0
    fees_paid: int = 0
    records: int = 0


ColdScan = Callable[["Table[Any]"], Iterator[tuple[str, Any]]]
Row = Account | Resource | Offer | Request | Acceptance | Trade | MeterLog | MeterReading
JournalEntry = tuple["Table[Any]", str, Any]


class ColdRows(dict[str, V]):
    """A table's rows in memory over those kept only in storage: a key not in memory is
    read with `load` (None: no such row) unless `gone` holds it (removed since storage was
    last written). Iterating it gives the rows in memory only; `everything` gives all."""

    def __init__(
        self,
        load: Callable[[str], V | None],
        scan: Callable[[], Iterator[tuple[str, V]]],
    ) -> None:
        super().__init__()
        self.load = load
        self.scan = scan
        self.gone: set[str] = set()

    def __missing__(self, key: str) -> V:
        value = None if key in self.gone else self.load(key)
        if value is None:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def __contains__(self, key: object) -> bool:
        if dict.__contains__(self, key):
            return True
        return isinstance(key, str) and key not in self.gone and self.load(key) is not None

    def everything(self) -> Iterator[tuple[str, V]]:
        """Every row: those in memory, then those only in storage."""
        yield from self.items()
        for key, value in self.scan():
            if not dict.__contains__(self, key) and key not in self.gone:
                yield key, value


class Table(Generic[V]):
    """One state table: a dict whose writes are journaled for undo and persistence."""

    def __init__(self, name: str, row_type: type[V], journal: list[JournalEntry]) -> None:
        self.name = name
        self.row_type = row_type
        self.rows: MutableMapping[str, V] = {}
        # Set by `keep_cold`: the rows no rule needs to decide the next record leave memory.
        self.finished: Callable[[str, V], bool] | None = None
        self._gone: set[str] | None = None
        self._journal = journal
        fields = dataclasses.fields(row_type)  # type: ignore[arg-type]
        self._names = tuple(f.name for f in fields)
        self._tuple_fields = tuple(f.name for f in fields if str(f.type).startswith("tuple"))
        self._shared_fields = tuple(f.name for f in fields if f.type == "str" and f.name != "id")
        # Rows of a keyed table carry their key as their first field, `id`.
        self._keyed = bool(self._names) and self._names[0] == "id"
        self._defaults = tuple(
            f.default if f.default is not dataclasses.MISSING else _NO_DEFAULT for f in fields
        )
        self._stored_defaults = self._defaults[1:] if self._keyed else self._defaults
        self._tuple_positions = tuple(
            i for i, f in enumerate(fields) if f.name in self._tuple_fields
        )
        # Field positions in name order: a checkpoint line lists a row's fields so.
        self._by_name = tuple(sorted((name, i) for i, name in enumerate(self._names)))

    def get(self, key: str) -> V | None:
        return self.rows.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def put(self, key: str, value: V) -> None:
        self._journal.append((self, key, self.rows.get(key, MISSING)))
        self.rows[key] = value
        if self._gone:
            self._gone.discard(key)

    def delete(self, key: str) -> None:
        old = self.rows.get(key, MISSING)
        if old is not MISSING:
            self._journal.append((self, key, old))
            self.rows.pop(key, None)
            if self._gone is not None:
                self._gone.add(key)

    def restore(self, key: str, old: Any) -> None:
        """Put back a value the journal remembered (no journaling: this *is* the undo)."""
        if old is MISSING:
            self.rows.pop(key, None)
            if self._gone is not None:
                self._gone.add(key)
        else:
            self.rows[key] = old
            if self._gone:
                self._gone.discard(key)

    def keep_cold(
        self,
        load: Callable[[str], V | None],
        scan: Callable[[], Iterator[tuple[str, V]]],
        finished: Callable[[str, V], bool],
    ) -> None:
        """Keep in memory only the rows not `finished`; the others are read from storage
        (`load` one, `scan` all) when asked for. Storage must hold every row `evict` drops."""
        rows = ColdRows(load, scan)
        rows.update(self.rows)
        self.rows = rows
        self._gone = rows.gone
        self.finished = finished

    def evict(self, keys: Iterable[str]) -> None:
        """After storage took the current values of `keys`: drop the finished ones from
        memory, and forget what was removed (storage agrees now)."""
        if self.finished is None:
            return
        rows, finished = self.rows, self.finished
        for key in keys:
            value = dict.get(rows, key)  # type: ignore[call-overload]
            if value is not None and finished(key, value):
                del rows[key]
        if self._gone:
            self._gone.clear()

    def values_all(self) -> Iterator[V]:
        """Every row's value, those only in storage included (a scan: for queries)."""
        rows = self.rows
        if isinstance(rows, ColdRows):
            return (value for _, value in rows.everything())
        return iter(list(rows.values()))

    def items_all(self) -> Iterator[tuple[str, V]]:
        """Every row, those only in storage included."""
        rows = self.rows
        if isinstance(rows, ColdRows):
            return rows.everything()
        return iter(list(rows.items()))

    def encode(self, value: V) -> str:
        """The row's canonical form (every field, in order): what state digests hash."""
        return _ROW_ENCODER.encode([getattr(value, name) for name in self._names])

    def decode(self, text: str) -> V:
        """A row from its canonical form."""
        return self._build(json.loads(text))

    def pack(self, value: V) -> str:
        """The row's stored form: the canonical one less the id (the row's key) and the
        trailing fields that hold their defaults."""
        values = [getattr(value, name) for name in self._names]
        if self._keyed:
            del values[0]
        return self._packed(values)

    def pack_fields(self, key: str, fields: dict[str, Any]) -> str:
        """`pack` of the row whose fields `fields` holds (a snapshot's line), without
        building it. Raises `ValueError` when a field is missing or unknown, or the id of a
        keyed row is not its key."""
        names = self._names
        if len(fields) != len(names):
            raise ValueError(f"{self.name}: fields {sorted(fields)} are not its row's")
        try:
            values = [fields[name] for name in names]
        except KeyError as exc:
            raise ValueError(f"{self.name}: field {exc} missing") from None
        for i in self._tuple_positions:
            if type(values[i]) is list:
                values[i] = tuple(values[i])
        if self._keyed:
            if values[0] != key:
                raise ValueError(f"{self.name}: row {key[:16]} holds another id")
            del values[0]
        return self._packed(values)

    def _packed(self, values: list[Any]) -> str:
        """Stored values (the id already left out) less the trailing defaults, encoded."""
        defaults = self._stored_defaults
        end = len(values)
        while end and values[end - 1] == defaults[end - 1]:
            end -= 1
        return _ROW_ENCODER.encode(values[:end])

    def unpack(self, key: str, text: str) -> V:
        """A row from its stored form, or from the canonical form a store written before
        packing holds (every field: one more than a packed row of a keyed table has)."""
        values = json.loads(text)
        if len(values) == len(self._names):
            return self._build(values)
        if self._keyed:
            values.insert(0, key)
        return self._build(values + list(self._defaults[len(values) :]))

    def stored_fields(self, key: str, text: str) -> dict[str, Any]:
        """A stored row's fields by name, in name order, without building the row (a
        checkpoint streams every stored row through this: `checkpoint.stored_lines`)."""
        values = json.loads(text)
        if len(values) != len(self._names):
            if self._keyed:
                values.insert(0, key)
            values.extend(self._defaults[len(values) :])
        return {name: values[i] for name, i in self._by_name}

    def _build(self, values: list[Any]) -> V:
        kwargs = dict(zip(self._names, values, strict=True))
        for name in self._tuple_fields:
            kwargs[name] = tuple(kwargs[name])
        # Accounts, resources, modes and statuses repeat across rows: one string each.
        for name in self._shared_fields:
            kwargs[name] = sys.intern(kwargs[name])
        return self.row_type(**kwargs)


# The rows no rule needs to decide the next record, by table: they leave memory (`keep_cold`)
# and a store marks them, so that a start reads only the others.
FINISHED: dict[str, Callable[[str, Any], bool]] = {
    "offers": lambda _k, o: o.status != "open",
    "acceptances": lambda _k, a: a.status != "pending",
    "trades": lambda _k, t: t.status == "settled",
    # A reading never changes; settlement reads the recent ones back.
    "readings": lambda _k, _r: True,
}


# Rules 4 on: the tables whose rows close and are then forgotten (`forget.py`).
CLOSING = frozenset({"acceptances", "offers", "readings", "requests", "trades"})
# A store's answer to "which committed rows closed after `low` (None: ever) and at or
# before `high`", as (closed at, table, key).
ClosedQuery = Callable[[int | None, int], Iterable[tuple[int, str, str]]]


def closed_at(table: str, row: Any) -> int | None:
    """Rules 4: the chain time a row closes at, from the row alone (None: a counter-offer,
    which closes with its offer, `State.closed_time`): a trade at the end of its window
    (settled by then or, `forget_after_ms` later, by the ledger), a reading a week after
    its period (a trade's window may run that long: a dispute reads it back)."""
    if table == "trades":
        return int(row.end)
    if table == "readings":
        return int(row.end) + MAX_WINDOW_MS
    if table == "offers":
        return max(row.expires, row.end, row.auction_closes)  # type: ignore[no-any-return]
    if table == "requests":
        return max(row.expires, row.end)  # type: ignore[no-any-return]
    return None


def is_finished(table: str, key: str, value: Any) -> bool:
    """Whether the row `value` of `table` is finished (`FINISHED`): kept in storage only."""
    finished = FINISHED.get(table)
    return finished is not None and finished(key, value)


class Fields:
    """A row's fields (a snapshot line's object) read as attributes, as `FINISHED` reads."""

    __slots__ = ("fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self.fields = fields

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None


def closed_at_fields(table: str, fields: dict[str, Any]) -> int | None:
    """`closed_at` of a row given as the object of its fields (a snapshot's line)."""
    return closed_at(table, Fields(fields))


def finished_fields(table: str, key: str, fields: dict[str, Any]) -> bool:
    """`is_finished` of a row given as the object of its fields, without building it."""
    finished = FINISHED.get(table)
    return finished is not None and finished(key, Fields(fields))


class State:
    """All tables of the ledger state, sharing one journal."""

    def __init__(self) -> None:
        self.journal: list[JournalEntry] = []
        j = self.journal
        self.accounts = Table("accounts", Account, j)
        self.resources = Table("resources", Resource, j)
        self.offers = Table("offers", Offer, j)
        self.requests = Table("requests", Request, j)
        self.acceptances = Table("acceptances", Acceptance, j)
        self.trades = Table("trades", Trade, j)
        self.meters = Table("meters", MeterLog, j)
        self.readings = Table("readings", MeterReading, j)
        self.fees = Table("fees", PendingFee, j)
        self.totals_table = Table("totals", Totals, j)
        # Open capacity/energy commitments per resource, as `resource -> trade ids`.
        self.commitments: Table[Commitments] = Table("commitments", Commitments, j)
        # Every trade of a resource in the order it was made (first-in-first-out delivery).
        self.resource_trades: Table[Commitments] = Table("resource_trades", Commitments, j)
        # Offers that are auctions and still open, so closing them needs no scan.
        self.open_auctions: Table[AuctionIndex] = Table("open_auctions", AuctionIndex, j)
        # Latest rules: accounts a registrar stands behind, and transfers by `sender>receiver`.
        self.vouched = Table("vouched", Vouched, j)
        self.funding = Table("funding", Funding, j)
        # Sealers (by account) whose equivocation is recorded, with the evidence's record id.
        self.suspended: Table[Suspension] = Table("suspended", Suspension, j)
        # Rules 3 on: each member's display name and standing, by account (`member` records).
        self.members: Table[Member] = Table("members", Member, j)
        # Rows that finished, by the chain time they did, waiting to leave memory.
        self._finishing: deque[tuple[int, Table[Any], str]] = deque()
        # Rules 3 on (`sealer` records): the sealer set once every recorded change is in
        # force (one row, "", absent while no change is recorded), and the changes each
        # block of the best chain recorded, by height (what `sealers.py` schedules).
        self.sealer_plan: Table[SealerPlan] = Table("sealer_plan", SealerPlan, j)
        self.sealer_changes: Table[SealerPlan] = Table("sealer_changes", SealerPlan, j)
        # Set by a store that indexes when its rows closed; then `_closing` holds only the
        # rows written or read from it since its last commit, else every closing row (a
        # state in memory). `_swept_to`: the close times read from the store since then.
        self.closed_query: ClosedQuery | None = None
        self._closing: list[tuple[int, str, str]] = []
        self._swept_to: int | None = None

    def tables(self) -> Iterator[Table[Any]]:
        """Every table of the state."""
        for value in vars(self).values():
            if isinstance(value, Table):
                yield value

    def table(self, name: str) -> Table[Any]:
        for t in self.tables():
            if t.name == name:
                return t
        raise KeyError(name)

    # -- accounts ---------------------------------------------------------------------------

    def account(self, account_id: str) -> Account:
        return self.accounts.rows.get(account_id) or _EMPTY_ACCOUNT

    @property
    def totals(self) -> Totals:
        return self.totals_table.rows.get("", _EMPTY_TOTALS)

    def add_totals(self, issued: int = 0, fees_paid: int = 0, records: int = 0) -> None:
        t = self.totals
        self.totals_table.put(
            "",
            Totals(t.issued + issued, t.fees_paid + fees_paid, t.records + records),
        )

    # -- journal ----------------------------------------------------------------------------

    def mark(self) -> int:
        return len(self.journal)

    def revert(self, mark: int) -> None:
        """Undo every write made since `mark`, newest first."""
        # A sweep undone may have read rows from the store it then forgot: read them again.
        self._swept_to = None
        journal = self.journal
        while len(journal) > mark:
            table, key, old = journal.pop()
            table.restore(key, old)

    def undo_entries(self, entries: list[JournalEntry]) -> None:
        """Undo a block given its journal slice (used to disconnect blocks in a reorg)."""
        for table, key, old in reversed(entries):
            self.journal.append((table, key, table.rows.get(key, MISSING)))
            table.restore(key, old)
        self.index_closing(entries)

    def digest(self) -> str:
        """A hash of the whole state: equal on every node that applied the same blocks."""
        h = hashlib.sha256()
        for table in sorted(self.tables(), key=lambda t: t.name):
            for key, value in sorted(table.items_all()):
                h.update(f"{table.name}\0{key}\0{table.encode(value)}\n".encode())
        return h.hexdigest()

    def closed_time(self, table: str, row: Any) -> int | None:
        """`closed_at` of a row of this state; a counter-offer's is its offer's (0 once
        the offer is forgotten)."""
        if table == "acceptances":
            offer = self.offers.rows.get(row.offer)
            return 0 if offer is None else closed_at("offers", offer)
        return closed_at(table, row)

    def index_closing(self, entries: Iterable[JournalEntry]) -> None:
        """Note the close time of the closed rows `entries` wrote (a block's writes, at its
        end; rows an undo put back), so `closed_candidates` finds them before a commit."""
        closing = self._closing
        for table, key, _old in entries:
            name = table.name
            if name in CLOSING:
                row = table.rows.get(key)
                closed = None if row is None else self.closed_time(name, row)
                if closed is not None:
                    heapq.heappush(closing, (closed, name, key))

    def closed_candidates(self, before: int, sweep: bool = True) -> set[tuple[str, str]]:
        """The (table, key) of every row that closed at or before chain time `before`, and
        maybe rows since changed or gone (the caller looks at each row): the store's
        committed rows (`closed_query`) and those noted since (`index_closing`).

        A sweep (`sweep`) reads from the store only the close times it has not read since
        the last commit (so a batch of blocks committed together reads each row once, not
        once a block) and notes what it read in memory, where the rows it kept stay
        candidates; without `sweep` (a view over this state) nothing here changes."""
        closing, query = self._closing, self.closed_query
        if not sweep:
            found = {(name, key) for closed, name, key in closing if closed <= before}
            if query is not None:
                found.update((name, key) for _, name, key in query(None, before))
            return found
        if query is not None:
            low = self._swept_to
            if low is None or low < before:
                for item in query(low, before):
                    heapq.heappush(closing, item)
                self._swept_to = before
        found, due = set(), []
        while closing and closing[0][0] <= before:
            due.append(heapq.heappop(closing))
        for item in due:
            closed, name, key = item
            found.add((name, key))
            row = self.table(name).rows.get(key)
            # Still there as noted: noted again, in case it stays (a sweep that refuses it).
            if row is not None and self.closed_time(name, row) == closed:
                heapq.heappush(closing, item)
        return found

    def keep_cold(self, load: Callable[[Table[Any], str], Any], scan: ColdScan) -> None:
        """Keep closed offers, answered acceptances, settled trades and meter readings
        in storage only once finished for `FINISHED_HOT_MS` (`load`, `scan`): what decides the next
        record stays in memory, so memory does not grow with the chain's history."""
        for name, finished in FINISHED.items():
            table = self.table(name)
            table.keep_cold(
                lambda key, t=table: load(t, key),  # type: ignore[misc]
                lambda t=table: scan(t),  # type: ignore[misc]
                finished,
            )

    def evict(self, entries: Iterable[JournalEntry], time: int) -> None:
        """After storage took the writes of `entries` (a block of chain time `time`): the
        rows finished for `FINISHED_HOT_MS` of chain time leave memory (the app still sees
        a trade just settled, to rate it), and what was removed is forgotten."""
        finishing = self._finishing
        for table, key, _old in entries:
            if table.finished is not None:
                value = dict.get(table.rows, key)  # type: ignore[call-overload]
                if value is not None and table.finished(key, value):
                    finishing.append((time, table, key))
        due: dict[Table[Any], list[str]] = {}
        while finishing and finishing[0][0] <= time - FINISHED_HOT_MS:
            _, table, key = finishing.popleft()
            due.setdefault(table, []).append(key)
        for table in self.tables():
            if table.finished is not None:
                table.evict(due.get(table, []))
        if self.closed_query is not None:
            # Storage has every row written so far, with its close time: read afresh.
            self._closing.clear()
            self._swept_to = None


@dataclass(frozen=True, slots=True)
class Suspension:
    """A sealer proven to have signed two blocks at one height: it seals no more."""

    height: int
    evidence: str


@dataclass(frozen=True, slots=True)
class Member:
    """A member as its registrar names it: display name, standing, and since which block."""

    name: str
    status: str
    height: int


@dataclass(frozen=True, slots=True)
class SealerPlan:
    """Sealer keys in turn order (`sealer_plan`), or a block's changes, each "add:KEY" or
    "remove:KEY" in record order (`sealer_changes`)."""

    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Commitments:
    """The trades a resource is committed to and not yet released."""

    trades: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuctionIndex:
    """Open auctions, by the time they close."""

    offers: tuple[str, ...] = ()


_EMPTY_ACCOUNT = Account()
_EMPTY_TOTALS = Totals()


_GONE: Any = object()


class OverlayRows(MutableMapping[str, V]):
    """Rows written over a base table without touching it: reads fall through to the
    base, writes and deletions stay here."""

    def __init__(self, base: Mapping[str, V]) -> None:
        self.base = base
        self.own: dict[str, Any] = {}

    def __getitem__(self, key: str) -> V:
        if key in self.own:
            value = self.own[key]
            if value is _GONE:
                raise KeyError(key)
            return value  # type: ignore[no-any-return]
        return self.base[key]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.own.get(key, _GONE) if key in self.own else self.base.get(key, default)
        return default if value is _GONE else value

    def __contains__(self, key: object) -> bool:
        if key in self.own:
            return self.own[key] is not _GONE
        return key in self.base

    def __setitem__(self, key: str, value: V) -> None:
        self.own[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        self.own[key] = _GONE

    def __iter__(self) -> Iterator[str]:
        yield from (k for k, v in self.own.items() if v is not _GONE)
        yield from (k for k in self.base if k not in self.own)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class PendingState(State):
    """The state the next block would start from with the pool's records applied: a
    layer over the chain's state, so checking a new record against it costs one record,
    not the whole pool again. Thrown away whenever the chain or the pool changes."""

    def __init__(self, base: State) -> None:
        super().__init__()
        for table in self.tables():
            table.rows = OverlayRows(base.table(table.name).rows)
        self._base = base

    def closed_candidates(self, before: int, sweep: bool = True) -> set[tuple[str, str]]:
        """The base state's candidates (leaving the base as it is) and the rows written
        over it."""
        found = self._base.closed_candidates(before, sweep=False)
        found.update((t.name, key) for t, key, _ in self.journal if t.name in CLOSING)
        return found

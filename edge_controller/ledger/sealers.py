"""Rules 3: the sealer set changes by registrar-signed `sealer` records.

A `sealer` record ({key, action: add/remove}) changes the set only forward, and only once
it is final: it takes effect `SEALER_CHANGE_DELAY` blocks after the block at which the
block holding it became final on that chain (a majority of the sealers then in force
sealed blocks on top of it). So the set in force at height h is a function of the chain's
blocks below h alone, and of only those of them that the chain had made final:

- checking the next block on its best chain, a node finds every change that applies in
  blocks at or below its own final height, which no reorganisation undoes;
- a competing branch must hold the node's final block (else `reverts_final` from its first
  header); a change it recorded above the fork counts on it only once a majority of the
  sitting sealers sealed over it there, and the node reads that change from the branch's
  blocks, which it holds whole (a block is admitted only after its parent);
- the `headers` stage of sync checks no turn (only linkage, proof and the final block), so
  it needs no set at all.

A registrar cannot rewrite the past: a change applies only above the height at which it
became final, and a fork below the final height is refused. Nor can it seat its own keys
at once on a private branch: the sitting sealers' majority must first seal over the change.

`SealerTimeline` keeps, per block, the set in force for the block after it and the changes
on their way (`SealerView`), computed from the parent's view, the block's header and the
changes it recorded; nothing of it exists until a community records its first change.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .consensus import Ancestor, IndexEntry, final_height
from .errors import Reason, Rejected
from .genesis import THIRD_RULES, Genesis
from .keys import account_id
from .state import SealerPlan, State

# Blocks after the one that made a change final until the change is in force (the block
# after next): every node has seen the finalising block before the set it brings applies.
SEALER_CHANGE_DELAY = 2
# As many as a genesis file may name.
MAX_SEALERS = 64

Change = str
"""A change as recorded: "add:KEY" or "remove:KEY"."""


def planned(state: State, genesis: Genesis) -> tuple[str, ...]:
    """The sealer set once every change the chain recorded is in force."""
    plan = state.sealer_plan.get("")
    return genesis.consensus.sealers if plan is None else plan.keys


def apply_change(state: State, genesis: Genesis, height: int, key: str, action: str) -> None:
    """Record a `sealer` change (the registrar's signature and the rules version already
    checked); raise `Rejected` when the set would break a bound: at least one sealer that
    is not suspended stays, at most `MAX_SEALERS`, no key twice, no suspended key back."""
    plan = planned(state, genesis)
    if action == "add":
        if key in plan:
            raise Rejected(Reason.ALREADY_SEALER, f"{key[:16]}… is already a sealer")
        if account_id(key) in state.suspended:
            raise Rejected(
                Reason.SEALER_SUSPENDED,
                f"{key[:16]}… signed two blocks at one height; it stays out",
            )
        if len(plan) >= MAX_SEALERS:
            raise Rejected(
                Reason.TOO_MANY_SEALERS, f"a community has at most {MAX_SEALERS} sealers"
            )
        keys = (*plan, key)
    else:
        if key not in plan:
            raise Rejected(Reason.NOT_A_SEALER, f"{key[:16]}… is not a sealer")
        keys = tuple(k for k in plan if k != key)
        if not any(account_id(k) not in state.suspended for k in keys):
            raise Rejected(
                Reason.LAST_SEALER, "the community would have no sealer left to seal its blocks"
            )
    state.sealer_plan.put("", SealerPlan(keys))
    row = state.sealer_changes.get(str(height))
    change = f"{action}:{key}"
    state.sealer_changes.put(str(height), SealerPlan((*(row.keys if row else ()), change)))


def ever_sealers(state: State, genesis: Genesis) -> tuple[str, ...]:
    """Genesis' sealers and every key added since: whose two headers are evidence."""
    plan = planned(state, genesis)
    return (*genesis.consensus.sealers, *(k for k in plan if k not in genesis.consensus.sealers))


_RULING: dict[tuple[int, tuple[str, ...]], tuple[Genesis, Genesis]] = {}


def ruling(genesis: Genesis, sealers: tuple[str, ...]) -> Genesis:
    """`genesis` with `sealers` as its set: the consensus parameters in force at a height,
    for the turn, spacing and finality rules of `consensus.py` (memoised: sets are few)."""
    if sealers == genesis.consensus.sealers:
        return genesis
    key = (id(genesis), sealers)
    found = _RULING.get(key)
    # The genesis is kept with its copy, so its id cannot be reused while memoised.
    if found is None or found[0] is not genesis:
        if len(_RULING) >= 1_024:
            _RULING.clear()
        consensus = dataclasses.replace(genesis.consensus, sealers=sealers)
        found = _RULING[key] = (genesis, dataclasses.replace(genesis, consensus=consensus))
    return found[1]


def quorum(sealers: tuple[str, ...]) -> int:
    """Distinct sealers on top of a block that make it final: a majority of the set."""
    return len(sealers) // 2 + 1


@dataclass(frozen=True, slots=True)
class SealerView:
    """After a block: the set in force for the next block, the changes recorded but not
    yet final (height recorded, change), and those final but not yet in force (height
    they take effect at, change), each in record order."""

    sealers: tuple[str, ...]
    pending: tuple[tuple[int, Change], ...] = ()
    scheduled: tuple[tuple[int, Change], ...] = ()

    @property
    def quorum(self) -> int:
        """Distinct sealers on top of a block that make it final, by this set."""
        return quorum(self.sealers)


def _changed(sealers: tuple[str, ...], change: Change) -> tuple[str, ...]:
    action, key = change.split(":", 1)
    if action == "add":
        return sealers if key in sealers else (*sealers, key)
    return tuple(k for k in sealers if k != key)


def next_view(
    view: SealerView, entry: IndexEntry, changes: tuple[Change, ...], ancestor: Ancestor
) -> SealerView:
    """The view after `entry`, from the view after its parent (`view`, whose set was in
    force at `entry`) and the changes `entry`'s block recorded."""
    pending = view.pending + tuple((entry.height, c) for c in changes)
    scheduled = view.scheduled
    if pending:
        final = final_height(entry, view.quorum, ancestor)
        done = tuple(c for h, c in pending if h <= final)
        if done:
            pending = tuple(p for p in pending if p[0] > final)
            scheduled += tuple((entry.height + SEALER_CHANGE_DELAY, c) for c in done)
    sealers = view.sealers
    if scheduled and scheduled[0][0] <= entry.height + 1:
        for at, change in scheduled:
            if at <= entry.height + 1:
                sealers = _changed(sealers, change)
        scheduled = tuple(s for s in scheduled if s[0] > entry.height + 1)
    if pending == view.pending and scheduled == view.scheduled and sealers == view.sealers:
        return view
    return SealerView(sealers, pending, scheduled)


def changes_in(genesis: Genesis, records: Iterable[Any]) -> tuple[Change, ...]:
    """The sealer changes a block's records make (none before rules 3)."""
    if genesis.consensus.rules < THIRD_RULES:
        return ()
    return tuple(f"{r.body['action']}:{r.body['key']}" for r in records if r.kind == "sealer")


class SealerTimeline:
    """The sealer set in force at every block a node indexed, on every branch."""

    def __init__(
        self, genesis: Genesis, index: Mapping[str, IndexEntry], ancestor: Ancestor
    ) -> None:
        self.genesis = genesis
        self.index = index
        self.ancestor = ancestor
        self.first = SealerView(genesis.consensus.sealers)
        # Changes recorded by each indexed block that recorded any, by block hash.
        self._changes: dict[str, tuple[Change, ...]] = {}
        # The lowest height of such a block: the view after any block below it is `first`.
        self._lowest = 0
        # The view after each block (by hash) and that block's height.
        self._views: dict[str, tuple[int, SealerView]] = {}
        self._pruned_to = 0

    @property
    def active(self) -> bool:
        """Whether any block this node holds recorded a change (until then: genesis' set)."""
        return bool(self._changes)

    def note_block(self, block_hash: str, height: int, records: Iterable[Any]) -> None:
        """Remember the changes a block records (called as its body is admitted)."""
        self.note_changes(block_hash, height, changes_in(self.genesis, records))

    def note_changes(self, block_hash: str, height: int, changes: tuple[Change, ...]) -> None:
        """Remember a stored block's changes (at start, from the state's table)."""
        if changes:
            self._lowest = min(self._lowest, height) if self._changes else height
            self._changes[block_hash] = changes

    def seed(self, entry_at: Callable[[int], IndexEntry], height: int, heights: list[int]) -> None:
        """At start: the view after the best chain's block at `height` (`entry_at` reads
        the best chain's entries), so no later walk goes below it. Worked out forward from
        the first change, over the blocks around each change only (`heights`: those of the
        blocks that recorded one): once every change before is in force, the view stays as
        it is until the next."""
        marks = sorted(h for h in heights if h <= height)
        if not marks:
            return
        view, at, i = self.first, marks[0] - 1, 0
        while at < height:
            if not view.pending and not view.scheduled:
                while i < len(marks) and marks[i] <= at:
                    i += 1
                if i == len(marks):
                    break
                at = marks[i] - 1
            at += 1
            entry = entry_at(at)
            view = next_view(view, entry, self._changes.get(entry.hash, ()), self.ancestor)
        self._views[entry_at(height).hash] = (height, view)

    def after(self, entry: IndexEntry) -> SealerView:
        """The view after `entry`: its set is in force at `entry.height + 1`."""
        if not self._changes:
            return self.first
        path: list[IndexEntry] = []
        view: SealerView | None = None
        while view is None:
            if entry.height < self._lowest:
                view = self.first
                break
            known = self._views.get(entry.hash)
            if known is None:
                path.append(entry)
                entry = self.index[entry.prev]
            else:
                view = known[1]
        for step in reversed(path):
            view = next_view(view, step, self._changes.get(step.hash, ()), self.ancestor)
            self._views[step.hash] = (step.height, view)
        return view

    def in_force(self, entry: IndexEntry) -> SealerView:
        """The view whose set sealed (and checked) `entry` itself."""
        if entry.height == 0:
            return self.first
        return self.after(self.index[entry.prev])

    def forget_below(self, height: int) -> None:
        """Drop the views of blocks below `height` (the final height): no block is
        checked on a parent below it any more."""
        if height <= self._pruned_to:
            return
        self._pruned_to = height
        if self._views:
            self._views = {h: v for h, v in self._views.items() if v[0] >= height}

"""Neighbours' records that arrive ahead of a gap in their signer's sequence wait for it.

The ledger accepts a sequence number below the highest one seen only within a 64-wide
window, so a record that arrives more than 64 places late is refused as a stale replay,
and so is a home's own record once a block holds later ones. A burst reordered on its
way (a peer's rate limit, a reconnection) must therefore not be sealed ahead of its
gap: a record whose signer's sequence has a gap before it waits here until the gap fills.
The wait is bounded: per signer (`per_signer` records), in signers (`signers`) and in
time (`hold_ms`, after which the gap is taken as final: its record was refused or lost).
Only records whose signature was verified wait, so nobody can fill this with forgeries.
A record further ahead than the consensus lets a sequence jump (`max_jump`) never waits:
no gap that could fill meanwhile makes it valid, so the ledger refuses it at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from edge_controller.ledger import Record

log = logging.getLogger(__name__)

HOLD_MS = 10_000
PER_SIGNER = 512
SIGNERS = 64


@dataclass
class _Held:
    records: dict[int, Record] = field(default_factory=dict)
    since: int = 0
    peer: str = ""  # who relayed them: the home asked for the missing ones


class SequenceGate:
    """Holds verified records that arrive ahead of a gap, per signer, until it fills."""

    def __init__(
        self,
        highest: Callable[[str], int],
        hold_ms: int = HOLD_MS,
        per_signer: int = PER_SIGNER,
        signers: int = SIGNERS,
        max_jump: int | None = None,
    ) -> None:
        self._highest = highest
        self.max_jump = max_jump
        self.hold_ms = hold_ms
        self.per_signer = per_signer
        self.signers = signers
        self._held: dict[str, _Held] = {}
        # The highest sequence of each signer refused here: no record will fill it.
        self._refused: dict[str, int] = {}
        self.waited = 0
        self.released_early = 0

    def __len__(self) -> int:
        return sum(len(h.records) for h in self._held.values())

    def _top(self, account: str) -> int:
        return max(self._highest(account), self._refused.get(account, 0))

    def _hopeless(self, record: Record) -> bool:
        """Whether `record` jumps further past its signer's highest sequence than the
        consensus allows: the ledger refuses it now, and no wait here would change that."""
        limit = self.max_jump
        return limit is not None and record.seq - self._highest(record.account) > limit

    def holding(self, account: str) -> bool:
        """Whether records of `account` wait for a gap."""
        return account in self._held

    def gaps(self) -> list[tuple[str, str, int, int]]:
        """(peer, account, first, last) of each missing run of sequences held records wait
        for, and the peer that relayed them (the one to ask)."""
        out = []
        for account, held in self._held.items():
            first = self._top(account) + 1
            last = min(held.records) - 1
            if first <= last:
                out.append((held.peer, account, first, last))
        return out

    def offer(self, record: Record, now: int, peer: str = "") -> list[Record]:
        """The records to submit now, in order: `record` itself unless a gap is before it
        (then it waits), and whatever a full buffer lets go. `peer` relayed it."""
        account = record.account
        if record.seq <= self._top(account) + 1 or self._hopeless(record):
            return [record]
        held = self._held.get(account)
        if held is None:
            released = self._make_room(now)
            held = self._held[account] = _Held(since=now)
        else:
            released = []
        held.records[record.seq] = record
        held.peer = peer or held.peer
        self.waited += 1
        if len(held.records) > self.per_signer:
            # Full: the lowest goes now; its gap is taken as final.
            lowest = min(held.records)
            released.append(held.records.pop(lowest))
            self.released_early += 1
        return released

    def refused(self, record: Record) -> None:
        """A record of this signer was refused here: its sequence will not be filled.
        A hopeless jump says nothing of the sequences below it, which may still come."""
        if self._hopeless(record):
            return
        account = record.account
        self._refused[account] = max(self._refused.get(account, 0), record.seq)
        if len(self._refused) > 4 * self.signers:
            self._refused.pop(next(iter(self._refused)))

    def ready(self, now: int) -> list[Record]:
        """Held records whose gap filled, or that waited `hold_ms`, in sequence order."""
        out: list[Record] = []
        for account in list(self._held):
            held = self._held[account]
            timed_out = now - held.since >= self.hold_ms
            if timed_out:
                self.released_early += len(held.records)
                log.warning(
                    "records of %s waited %d ms for sequences up to %d: gap taken as final",
                    account[:10], self.hold_ms, min(held.records) - 1,
                )  # fmt: skip
            top = self._top(account)
            for seq in sorted(held.records):
                if seq <= top + 1 or timed_out:
                    out.append(held.records.pop(seq))
                    top = max(top, seq)
                else:
                    break
            if not held.records:
                del self._held[account]
            elif out and out[-1].account == account:
                held.since = now  # progress: the next gap gets its own wait
        return out

    def _make_room(self, now: int) -> list[Record]:
        if len(self._held) < self.signers:
            return []
        oldest = min(self._held, key=lambda a: self._held[a].since)
        records = self._held.pop(oldest).records
        self.released_early += len(records)
        return [records[s] for s in sorted(records)]

"""The parts that keep an honest home whole under load, each alone: the sequence gate,
the refused list and the event bus's `resync`."""

from __future__ import annotations

import asyncio
from pathlib import Path

from edge_controller.app.events import EventBus
from edge_controller.app.ordering import SequenceGate
from edge_controller.app.refused import RefusedRecords
from edge_controller.ledger import KeyPair, Record, sign_record

COMMUNITY = "load-test"
ALICE = KeyPair.generate()


def record(seq: int, key: KeyPair = ALICE) -> Record:
    body = {"kind": "request", "seq": seq, "time": 1_000, "mode": "energy", "quantity": 1,
            "max_price": 1, "start": 10_000, "end": 20_000, "expires": 10_000}  # fmt: skip
    return sign_record(key, COMMUNITY, body)


class Chain:
    """What the gate reads: the highest sequence each signer has in chain and pool."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def submit(self, records: list[Record]) -> list[int]:
        for r in records:
            self.seq[r.account] = max(self.seq.get(r.account, 0), r.seq)
        return [r.seq for r in records]

    def highest(self, account: str) -> int:
        return self.seq.get(account, 0)


def test_a_record_ahead_of_a_gap_waits_until_the_gap_fills() -> None:
    chain = Chain()
    gate = SequenceGate(chain.highest, hold_ms=10_000)
    assert chain.submit(gate.offer(record(1), 0)) == [1]
    # 3..70 arrive before 2: beyond the ledger's 64-wide window, 2 would be stale.
    for seq in range(3, 71):
        assert gate.offer(record(seq), 0, "peer") == []
    assert len(gate) == 68 and gate.gaps() == [("peer", ALICE.account, 2, 2)]
    assert gate.ready(5_000) == []
    assert chain.submit(gate.offer(record(2), 5_000)) == [2]
    assert chain.submit(gate.ready(5_000)) == list(range(3, 71))
    assert len(gate) == 0 and gate.gaps() == []


def test_a_gap_refused_here_or_never_filled_stops_holding_anything() -> None:
    chain = Chain()
    gate = SequenceGate(chain.highest, hold_ms=10_000)
    chain.submit(gate.offer(record(1), 0))
    gate.refused(record(2))  # e.g. its offer was sold meanwhile: 2 will never be sealed
    assert chain.submit(gate.offer(record(3), 0)) == [3]
    assert gate.offer(record(5), 0) == []
    assert gate.ready(9_999) == []
    assert chain.submit(gate.ready(10_000)) == [5]  # 4 is taken as lost after the wait


def test_a_record_further_ahead_than_the_consensus_allows_never_waits() -> None:
    chain = Chain()
    gate = SequenceGate(chain.highest, hold_ms=10_000, max_jump=1_000)
    chain.submit(gate.offer(record(1), 0))
    # No gap that could fill within the wait makes it valid: the ledger refuses it now.
    far = record(1_002)
    assert gate.offer(far, 0, "peer") == [far] and len(gate) == 0 and gate.gaps() == []
    gate.refused(far)  # ...which says nothing of the sequences below it
    assert gate.offer(record(1_001), 0, "peer") == []  # within the bound: it waits
    assert gate.gaps() == [("peer", ALICE.account, 2, 1_000)]


def test_the_wait_is_bounded_per_signer_and_in_signers() -> None:
    chain = Chain()
    gate = SequenceGate(chain.highest, per_signer=4, signers=2)
    let_go = [r.seq for seq in range(10, 15) for r in gate.offer(record(seq), 0)]
    assert let_go == [10] and len(gate) == 4  # the fifth waiting one lets the lowest go
    others = [KeyPair.generate() for _ in range(2)]
    assert gate.offer(record(5, others[0]), 1) == []
    # A third signer makes room: the longest waiting signer's records go on.
    released = gate.offer(record(5, others[1]), 2)
    assert [r.seq for r in released] == [11, 12, 13, 14] and len(gate) == 2


def test_refused_records_are_kept_newest_first_bounded_and_across_a_restart(
    tmp_path: Path,
) -> None:
    kept = RefusedRecords(tmp_path / "refused.sqlite3", limit=3)
    for n in range(5):
        kept.add(f"id{n}", "request", n + 1, "offer_closed", f"offer {n} is sold", 1_000 + n)
    kept.add("id4", "request", 5, "expired", "again", 2_000)  # the first entry stays
    kept.close()
    again = RefusedRecords(tmp_path / "refused.sqlite3", limit=3)
    assert [r["id"] for r in again.list()] == ["id4", "id3", "id2"]
    assert again.list(since=1_003)[-1] == {
        "id": "id3", "kind": "request", "seq": 4, "code": "offer_closed",
        "message": "offer 3 is sold", "time": 1_003,
    }  # fmt: skip
    assert again.count() == 3


async def test_a_slow_subscriber_learns_how_many_events_it_missed() -> None:
    bus = EventBus(queue_size=4)
    slow = bus.subscribe()
    for n in range(10):
        bus.publish("block", {"height": n}, n)
    first = await slow.get()
    assert first == {"event": "resync", "time": 6, "data": {"dropped": 6}}
    rest = [await slow.get() for _ in range(4)]
    assert [e["data"]["height"] for e in rest] == [6, 7, 8, 9]
    bus.publish("block", {"height": 10}, 10)
    assert (await asyncio.wait_for(slow.get(), 1))["event"] == "block"

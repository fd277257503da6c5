"""A full block still reports what the pool holds that can never be sealed: an expired
request is dropped as `expired` when it is met, not kept until its sequence goes stale."""

from __future__ import annotations

from edge_controller.ledger import Consensus, Genesis, KeyPair, Ledger, Reason, sign_record

START = 1_717_200_000_000


def test_a_record_refused_for_good_is_reported_even_when_the_block_is_full() -> None:
    sealer, owner = KeyPair.generate(), KeyPair.generate()
    genesis = Genesis(
        name="Pool Street",
        currency="TST",
        time=START - 1_000,
        registrars=(KeyPair.generate().public_hex,),
        # No minimum balance: the pool's bookkeeping, not the cost of a record, is under test.
        consensus=Consensus(
            mode="poa", sealers=(sealer.public_hex,), max_block_records=2, min_balance=0
        ),
    )
    now = [START]
    ledger = Ledger(genesis, clock=lambda: now[0])
    dropped: list[tuple[int, str]] = []
    ledger.events.dropped.append(lambda record, why: dropped.append((record.seq, why.reason)))
    for seq in range(1, 6):
        expires = START + 500 if seq == 2 else START + 60_000
        body = {"kind": "request", "seq": seq, "time": START, "mode": "energy",
                "quantity": 100, "max_price": 300, "start": START + 60_000,
                "end": START + 120_000, "expires": expires}  # fmt: skip
        ledger.submit(sign_record(owner, genesis.community_id, body))
    now[0] = START + 1_000
    block = ledger.build_block(sealer, now[0])
    assert block is not None
    assert [r.seq for r in block.records] == [1, 3]
    assert dropped == [(2, Reason.EXPIRED)]
    assert sorted(r.seq for r in ledger.pool.values()) == [1, 3, 4, 5]

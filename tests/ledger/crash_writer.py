"""The writing process of the crash test: seals blocks of valid records until it is killed.

Usage: `python crash_writer.py DB_PATH RECORDS_PER_BLOCK`

It opens (or reopens) the ledger at DB_PATH, prints `ready HEIGHT HEAD`, then keeps
submitting valid records, sealing them into blocks and connecting them; it prints each
block's hash on its own line only after `add_block` returned "connected" (the node's
acknowledgement). Keys are derived from fixed seeds, so the test process rebuilds the same
genesis with `make_genesis()`. Any refusal is a bug in the writer or the ledger: the process
then exits with status 3 and the reason on stderr, which the test reports.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `edge_controller` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_controller.ledger import (
    FIRST_RULES,
    Consensus,
    Genesis,
    KeyPair,
    Ledger,
    Record,
    Rejected,
    sign_record,
)
from edge_controller.ledger.chain import now_ms

GENESIS_TIME = 1_700_000_000_000  # 2023-11-14, in the past so the wall clock can be used
HOUR = 3_600_000
RESOURCE = "fc-crash"
REGISTRAR = KeyPair.from_seed(b"crash-registrar")
SEALER = KeyPair.from_seed(b"crash-sealer")
USERS = [KeyPair.from_seed(f"crash-user-{i}".encode()) for i in range(4)]
OWNER = USERS[0]
FEE = 1


def make_genesis() -> Genesis:
    return Genesis(
        name="Crash Street",
        currency="SUN",
        time=GENESIS_TIME,
        registrars=(REGISTRAR.public_hex,),
        # The first rules: the writer seals as fast as the disk allows, faster than the
        # latest rules' sealer spacing.
        consensus=Consensus(
            mode="poa",
            rules=FIRST_RULES,
            sealers=(SEALER.public_hex,),
            confirmations=2,
            min_fee=FEE,
        ),
    )


class Writer:
    """Signs records with sequence numbers that continue from the stored chain and pool."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.seq: dict[str, int] = {}
        for key in (REGISTRAR, *USERS):
            self.seq[key.account] = ledger.state.account(key.account).seq
        for record in ledger.pool.values():
            self.seq[record.account] = max(self.seq.get(record.account, 0), record.seq)

    def sign(self, key: KeyPair, kind: str, **fields: object) -> Record:
        self.seq[key.account] += 1
        body = {"kind": kind, "seq": self.seq[key.account], "time": now_ms(), **fields}
        if key is not REGISTRAR:
            body["fee"] = FEE
        return sign_record(key, self.ledger.community, body)

    def records(self, count: int, n: int) -> list[Record]:
        """`count` valid records for block number `n`: top-ups, transfers, an offer and
        its acceptance (a trade), and the registration of the resource they need."""
        out: list[Record] = []
        if RESOURCE not in self.ledger.state.resources:
            out.append(
                self.sign(
                    REGISTRAR,
                    "registration",
                    resource=RESOURCE,
                    owner=OWNER.account,
                    resource_kind="fuel_cell",
                    power_w=10**9,
                    capacity_wh=10**9,
                )
            )
        for user in USERS:
            out.append(self.sign(REGISTRAR, "topup", to=user.account, amount=10_000))
        start = now_ms() + HOUR
        offer = self.sign(
            OWNER,
            "offer",
            resource=RESOURCE,
            mode="capacity",
            quantity=10,
            price=300,
            start=start,
            end=start + HOUR,
            expires=start,
        )
        buyer = USERS[1 + n % (len(USERS) - 1)]
        out += [offer, self.sign(buyer, "acceptance", offer=offer.id, quantity=10)]
        shift = 1 + n % (len(USERS) - 1)  # never 0: nobody pays themselves
        for i in range(count - len(out)):
            sender, to = USERS[i % len(USERS)], USERS[(i + shift) % len(USERS)]
            out.append(self.sign(sender, "transfer", to=to.account, amount=1 + i % 7))
        return out


def main(argv: list[str]) -> int:
    db_path, per_block = argv[1], int(argv[2])
    ledger = Ledger.open(db_path, make_genesis())
    writer = Writer(ledger)
    print("ready", ledger.height, ledger.head.hash, flush=True)
    n = 0
    try:
        while True:
            for record in writer.records(per_block, n):
                ledger.submit(record)
            block = ledger.build_block(SEALER)
            if block is None:
                raise RuntimeError("the only sealer may not seal")
            if ledger.add_block(block).status == "connected":
                print(block.hash, flush=True)
            n += 1
    except (Rejected, RuntimeError) as exc:
        print(f"writer failed: {exc!r}", file=sys.stderr, flush=True)
        return 3


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""The process the pruning and snapshot crash tests kill with SIGKILL.

Usage: `python history_writer.py prune DB GENESIS_JSON` prunes every block body it may, one
block per transaction, printing `base N` after each; `python history_writer.py seal DB`
seals blocks of a community with a checkpoint in every block (so every block writes a state
snapshot before it is committed), printing each block's hash once it is connected.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `edge_controller` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_controller.ledger import Consensus, Genesis, KeyPair, Ledger, prune_history, sign_record
from edge_controller.ledger.chain import now_ms

REGISTRAR = KeyPair.from_seed(b"history-registrar")
SEALERS = [KeyPair.from_seed(f"history-sealer-{i}".encode()) for i in range(3)]
TOPUPS_PER_BLOCK = 8


def seal_genesis() -> Genesis:
    """Three sealers, a checkpoint in every block, blocks as fast as the spacing allows."""
    return Genesis(
        name="Snapshot Street",
        currency="SUN",
        time=1_700_000_000_000,
        registrars=(REGISTRAR.public_hex,),
        consensus=Consensus(
            mode="poa",
            block_interval_ms=100,
            sealers=tuple(k.public_hex for k in SEALERS),
            confirmations=2,
            checkpoint_interval=1,
        ),
    )


def prune(db: Path, genesis: Genesis) -> None:
    ledger = Ledger.open(db, genesis)
    print(f"ready {ledger.base_height}", flush=True)
    while prune_history(ledger, 0, batch=1, most=1):
        print(f"base {ledger.base_height}", flush=True)
    print("done", flush=True)


def seal(db: Path) -> None:
    genesis = seal_genesis()
    ledger = Ledger.open(db, genesis)
    seq = ledger.pending_seq(REGISTRAR.account)  # its pool too: records it pooled before a kill
    print(f"ready {ledger.height}", flush=True)
    while True:
        for _ in range(TOPUPS_PER_BLOCK):
            seq += 1
            body = {
                "kind": "topup",
                "seq": seq,
                "time": now_ms(),
                "to": f"ep{seq:040x}",
                "amount": 1_000 + seq,
            }
            ledger.submit(sign_record(REGISTRAR, genesis.community_id, body))
        block = None
        while block is None:
            key = SEALERS[(ledger.height + 1) % len(SEALERS)]
            block = ledger.build_block(key)
        if ledger.add_block(block).status != "connected":
            sys.exit(f"own block not connected at {block.height}")
        print(block.hash, flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "prune":
        prune(Path(sys.argv[2]), Genesis.load(Path(sys.argv[3])))
    else:
        seal(Path(sys.argv[2]))

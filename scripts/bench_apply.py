"""What taking blocks costs a node on SQLite, with and without forgetting closed business.

    PYTHONPATH=. python scripts/bench_apply.py [--records 60000] [--forget-after-hours 24]
                                               [--no-trade-indexes]

Signs the growth benchmark's workload (`bench/ledger.py`: a street trading every 15-minute
slot) with a genesis that forgets closed business after --forget-after-hours (rules 4;
100000 is about never at these sizes), then times, in this process, a ledger on a fresh
SQLite file taking it in batches of 32 blocks as a home catching up does (`add_blocks`,
signatures checked in-process), and prints as JSON the CPU seconds, the database's size,
and the state's rows. `--no-trade-indexes` leaves out the indexes over stored trades that
statements read (`store.TRADE_INDEXES`), to see what they cost.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
from contextlib import closing
from pathlib import Path

from edge_controller.bench.ledger import BenchCommunity, signed_chain
from edge_controller.ledger import Ledger
from edge_controller.ledger import store as ledger_store

BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=60_000)
    parser.add_argument("--forget-after-hours", type=int, default=24)
    parser.add_argument("--no-trade-indexes", action="store_true")
    args = parser.parse_args()
    if args.no_trade_indexes:
        ledger_store.TRADE_INDEXES = ""
    street = BenchCommunity.create(forget_after_ms=args.forget_after_hours * 3_600_000)
    blocks = [block.to_wire() for block in signed_chain(street, args.records)]
    with tempfile.TemporaryDirectory(prefix="energy-p2p-apply-") as folder:
        path = Path(folder) / "ledger.db"
        ledger = Ledger.open(path, street.genesis)
        started = time.process_time()
        for first in range(0, len(blocks), BATCH):
            batch = blocks[first : first + BATCH]
            for outcome in ledger.add_blocks(batch, now=batch[-1]["header"]["time"]):
                if isinstance(outcome, Exception):
                    raise SystemExit(f"the ledger refused a block: {outcome}")
        cpu = time.process_time() - started
        ledger.close()
        with closing(sqlite3.connect(path)) as db:
            (rows,) = db.execute("SELECT COUNT(*) FROM state").fetchone()
        figures = {
            "records": sum(len(b["records"]) for b in blocks),
            "forget_after_hours": args.forget_after_hours,
            "trade_indexes": not args.no_trade_indexes,
            "cpu_s": round(cpu, 2),
            "db_mb": round(path.stat().st_size / 1e6, 1),
            "state_rows": rows,
        }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

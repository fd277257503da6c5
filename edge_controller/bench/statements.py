"""The statement benchmark: how long a home's monthly statement takes on a ledger that holds
a year of a community's trades, nearly all of them settled long ago (on disk only).

It writes `--trades` settled trades (default 100,000) spread over a year among `HOMES`
homes, `--own` of them (default 1,000) the owner's, into the state of a ledger on SQLite,
through the store's own commits, then lets them leave memory as a node's do an hour of
chain time after they settle. It times, for one month of the owner's:

- `scan_s`: a full scan of the state's trades (`values_all`, every row decoded), what a
  statement costs without the store's indexes;
- `statement_s`: the statement itself (`app/statements.py`, by `account_trades`);
- `memory_only_trades`: how many of the month's trades a scan of the rows in memory
  finds (what statements listed before: none of those settled over an hour ago);

and the cost of the indexes when the trades are written: `write_s`, and the database's
size (`db_bytes`).

`python -m edge_controller.bench.statements [--trades N] [--own N] [--json]`
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_controller.app.statements import month_bounds, statement
from edge_controller.ledger import Consensus, Genesis, KeyPair, Ledger, SqliteStore, Trade
from edge_controller.ledger.state import FINISHED_HOT_MS
from edge_controller.ledger.store import Commit

HOMES = 50
YEAR_MS = 365 * 86_400_000
START = 1_800_000_000_000
MONTH = "2027-06"
BATCH = 5_000


def _genesis() -> Genesis:
    sealer = KeyPair.from_seed(b"bench-sealer")
    return Genesis(
        name="Statement Street",
        currency="SUN",
        time=START,
        registrars=(KeyPair.from_seed(b"bench-registrar").public_hex,),
        consensus=Consensus(mode="poa", sealers=(sealer.public_hex,)),
    )


def _trades(count: int, own: int, owner: str, seed: int = 7) -> list[Trade]:
    """`count` settled 1 kWh trades at random hours of a year; `own` of them the owner's,
    half bought, half sold."""
    rng = random.Random(seed)
    homes = [f"{i:064x}" for i in range(1, HOMES)]
    trades = []
    for n in range(count):
        seller, buyer = rng.sample(homes, 2)
        if n < own:
            seller, buyer = (owner, buyer) if n % 2 else (seller, owner)
        start = START + rng.randrange(YEAR_MS // 3_600_000) * 3_600_000
        price = rng.randrange(100, 400)
        trades.append(
            Trade(
                id=f"{n:064x}",
                offer=f"{n:063x}f",
                seller=seller,
                buyer=buyer,
                resource=f"{seller[:8]}-pv",
                mode="energy",
                quantity=1_000,
                price=price,
                start=start,
                end=start + 3_600_000,
                energy_wh=1_000,
                cost=price,
                time=start - 3_600_000,
                status="settled",
                delivered_wh=1_000,
                paid=price,
            )
        )
    return trades


def run(count: int, own: int) -> dict[str, Any]:
    """Build the ledger in a temporary folder and time the statement (see the module)."""
    owner = f"{0:064x}"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger.sqlite3"
        ledger = Ledger(_genesis(), store=SqliteStore(path))
        state = ledger.state
        began = time.perf_counter()
        trades = _trades(count, own, owner)
        for low in range(0, count, BATCH):
            mark = state.mark()
            for trade in trades[low : low + BATCH]:
                state.trades.put(trade.id, trade)
            entries = state.journal[mark:]
            ledger.store.commit(Commit(head=ledger.head.hash, journal=entries))
            # Settled trades leave memory an hour of chain time after they settle.
            state.evict(entries, START)
            del state.journal[mark:]
        state.evict([], START + FINISHED_HOT_MS)
        write_s = time.perf_counter() - began
        start, end = month_bounds(MONTH)
        in_month = sum(1 for t in trades if start <= t.start < end)
        own_in_month = sum(1 for t in trades[:own] if start <= t.start < end)
        del trades
        memory_only = sum(1 for t in state.trades.rows.values() if start <= t.start < end)
        began = time.perf_counter()
        scanned = sum(
            1
            for t in state.trades.values_all()
            if owner in (t.buyer, t.seller) and start <= t.start < end
        )
        scan_s = time.perf_counter() - began
        began = time.perf_counter()
        data = statement(ledger, "SUN", None, owner, owner, MONTH)
        statement_s = time.perf_counter() - began
        listed = data["p2p"]["trade_count"]
        assert listed == scanned == own_in_month, (listed, scanned, own_in_month)
        ledger.close()
        return {
            "trades": count,
            "own": own,
            "month_trades": in_month,
            "own_month_trades": listed,
            "memory_only_trades": memory_only,
            "scan_s": round(scan_s, 4),
            "statement_s": round(statement_s, 4),
            "write_s": round(write_s, 2),
            "db_bytes": path.stat().st_size,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=100_000)
    parser.add_argument("--own", type=int, default=1_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not 0 <= args.own <= args.trades:
        parser.error("--own must be between 0 and --trades")
    result = run(args.trades, args.own)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

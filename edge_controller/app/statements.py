"""Monthly statements per owner: energy bought and sold (peer to peer, shared, grid),
prices, fees, disputes and ratings, as JSON, CSV and a printable PDF.

Two sources, each the one of record: peer-to-peer trades, fees, disputes and ratings come
from the ledger (the owner's account: its trades of the month wherever the ledger keeps them,
`account_trades`); shared and grid energy and the money the building
moved come from the building's book (`BuildingStore`), written in the same transaction as
the book. Energy in Wh and money in milli-units, so a statement reconciles with both to the
Wh and the milli-unit.
"""

from __future__ import annotations

import csv
import io
from calendar import monthrange
from datetime import UTC, datetime
from typing import Any

from edge_controller.app.building import Building
from edge_controller.ledger import Ledger, account_trades
from edge_controller.refusal import Refusal, Why

MAX_TRADES_LISTED = 1_000


def month_bounds(month: str) -> tuple[int, int]:
    """The UTC ms [start, end) of `month` ("2026-12"); refused when it is not one."""
    try:
        first = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise Refusal(
            "invalid_field", f"month must be YYYY-MM, not {month!r}", Why.INVALID
        ) from None
    days = monthrange(first.year, first.month)[1]
    start = int(first.timestamp() * 1000)
    return start, start + days * 86_400_000


def statement(
    ledger: Ledger,
    currency: str,
    building: Building | None,
    home_account: str,
    owner: str,
    month: str,
) -> dict[str, Any]:
    """The statement of `owner` (a building owner's id, or a ledger account) for `month`."""
    start, end = month_bounds(month)
    known = building.config.owner(owner) if building is not None else None
    if known is not None:
        name, account = known.name, known.account
    elif owner == home_account or ledger.knows_account(owner):
        name, account = owner, owner
    else:
        raise Refusal("unknown_owner", f"{owner} is neither an owner nor an account", Why.NOT_FOUND)
    result: dict[str, Any] = {
        "owner": owner,
        "name": name,
        "account": account,
        "month": month,
        "start": start,
        "end": end,
        "currency": currency,
        "building": None,
        "p2p": None,
        "fees": 0,
    }
    if building is not None and known is not None:
        result["building"] = _building_part(building, owner, month)
    if account is not None:
        result["p2p"] = _p2p_part(ledger, account, start, end)
        result["fees"] = _fees(ledger, account, start, end)
    return result


def _building_part(building: Building, owner: str, month: str) -> dict[str, Any]:
    community = building.config.community
    settlement = community.settlement
    figures = building.store.month(owner, month)
    prepaid = owner in building.book.balances
    part: dict[str, Any] = {
        "prices": {
            "grid_buy": settlement.buy_price,
            "grid_sell": settlement.sell_price,
            "shared": community.shared_price,
        },
        "sharing": community.sharing.key.value if community.sharing else None,
        "periods": 0,
        "import_wh": 0,
        "export_wh": 0,
        "p2p_in_wh": 0,
        "p2p_out_wh": 0,
        "shared_in_wh": 0,
        "shared_out_wh": 0,
        "grid_import_wh": 0,
        "grid_export_wh": 0,
        "movement": 0,
        "topups": 0,
        "prepaid": prepaid,
        "opening_balance": None,
        "closing_balance": None,
    }
    if figures is not None:
        part.update({k: v for k, v in figures.items() if k != "opening"})
        if prepaid and figures["opening"] is not None:
            part["opening_balance"] = figures["opening"]
            part["closing_balance"] = figures["opening"] + figures["movement"] + figures["topups"]
    return part


def _p2p_part(ledger: Ledger, account: str, start: int, end: int) -> dict[str, Any]:
    # Settled trades long ago live on disk, forgotten ones in the home's trade history.
    trades = sorted(account_trades(ledger, account, start, end), key=lambda t: (t.start, t.id))
    totals = {
        "bought_wh": 0,
        "bought_paid": 0,
        "sold_wh": 0,
        "sold_received": 0,
        "refunded": 0,
        "open_trades": 0,
        "open_value": 0,
        "disputes": 0,
    }
    given: list[int] = []
    received: list[int] = []
    rows: list[dict[str, Any]] = []
    for t in trades:
        buyer = t.buyer == account
        settled = t.status == "settled"
        if settled:
            # The seller receives what the buyer paid; the rest was refunded to the buyer.
            totals["bought_wh" if buyer else "sold_wh"] += t.delivered_wh
            totals["bought_paid" if buyer else "sold_received"] += t.paid
            if buyer:
                totals["refunded"] += t.refunded
        else:
            totals["open_trades"] += 1
            totals["open_value"] += t.cost
        if t.disputed_wh >= 0:
            totals["disputes"] += 1
        mine, theirs = (
            (t.buyer_rating, t.seller_rating) if buyer else (t.seller_rating, t.buyer_rating)
        )
        # A trade's buyer_rating is the buyer's mark for the seller, and the other way round.
        if mine >= 0:
            given.append(mine)
        if theirs >= 0:
            received.append(theirs)
        if len(rows) < MAX_TRADES_LISTED:
            rows.append(
                {
                    "id": t.id,
                    "role": "buyer" if buyer else "seller",
                    "counterparty": t.seller if buyer else t.buyer,
                    "start": t.start,
                    "end": t.end,
                    "status": t.status,
                    "energy_wh": t.energy_wh,
                    "delivered_wh": t.delivered_wh,
                    "price": t.price,
                    "cost": t.cost,
                    "paid": t.paid,
                    "refunded": t.refunded,
                    "disputed_wh": t.disputed_wh if t.disputed_wh >= 0 else None,
                    "rating_given": mine if mine >= 0 else None,
                    "rating_received": theirs if theirs >= 0 else None,
                }
            )
    return {
        **totals,
        "average_price": (
            (totals["bought_paid"] + totals["sold_received"])
            * 1000
            // (totals["bought_wh"] + totals["sold_wh"])
            if totals["bought_wh"] + totals["sold_wh"]
            else None
        ),
        "ratings": {
            "given": len(given),
            "received": len(received),
            "received_average": round(sum(received) / len(received), 2) if received else None,
        },
        "trades": rows,
        "trade_count": len(trades),
    }


def _fees(ledger: Ledger, account: str, start: int, end: int) -> int:
    """Fees the account's records paid in blocks sealed in [start, end)."""
    low, high = 1, ledger.height + 1
    # Block times never go down along the chain: find the month's first block by halving.
    while low < high:
        middle = (low + high) // 2
        block = ledger.block_at(middle)
        if block is not None and block.header.time < start:
            low = middle + 1
        else:
            high = middle
    fees = 0
    for block in ledger.iter_main(low):
        if block.header.time >= end:
            break
        fees += sum(r.fee for r in block.records if r.account == account)
    return fees


# --- printable forms -------------------------------------------------------------------------


def _lines(data: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, energy in Wh, price per kWh, amount) rows both printed forms show."""
    lines: list[tuple[str, str, str, str]] = []
    part = data["building"]
    if part is not None:
        prices = part["prices"]
        lines += [
            ("Metered import", str(part["import_wh"]), "", ""),
            ("Metered export", str(part["export_wh"]), "", ""),
            ("Shared energy received", str(part["shared_in_wh"]), str(prices["shared"]), ""),
            ("Shared energy supplied", str(part["shared_out_wh"]), str(prices["shared"]), ""),
            ("Grid import", str(part["grid_import_wh"]), str(prices["grid_buy"]), ""),
            ("Grid export", str(part["grid_export_wh"]), str(prices["grid_sell"]), ""),
            ("Peer-to-peer within the metered energy, in", str(part["p2p_in_wh"]), "", ""),
            ("Peer-to-peer within the metered energy, out", str(part["p2p_out_wh"]), "", ""),
            ("Building settlement (net)", "", "", str(part["movement"])),
            ("Top-ups", "", "", str(part["topups"])),
        ]
        if part["prepaid"]:
            lines += [
                ("Opening balance", "", "", str(part["opening_balance"])),
                ("Closing balance", "", "", str(part["closing_balance"])),
            ]
    p2p = data["p2p"]
    if p2p is not None:
        lines += [
            ("Peer-to-peer bought (settled)", str(p2p["bought_wh"]), "", str(-p2p["bought_paid"])),
            ("Peer-to-peer sold (settled)", str(p2p["sold_wh"]), "", str(p2p["sold_received"])),
            ("Refunded to you", "", "", str(p2p["refunded"])),
            ("Open trades", str(p2p["open_trades"]), "", str(p2p["open_value"])),
            ("Disputes", str(p2p["disputes"]), "", ""),
            ("Ratings received (average)", str(p2p["ratings"]["received_average"]), "", ""),
            ("Ledger fees", "", "", str(-data["fees"])),
        ]
    return lines


def statement_csv(data: dict[str, Any]) -> str:
    """The statement as CSV: a header block, the summary lines, then each trade."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["statement", data["owner"], data["name"], data["month"], data["currency"]])
    writer.writerow(["line", "energy_wh", "price_per_kwh", "amount_milli"])
    writer.writerows(_lines(data))
    if data["p2p"] is not None and data["p2p"]["trades"]:
        keys = list(data["p2p"]["trades"][0])
        writer.writerow([])
        writer.writerow(["trade", *keys[1:]])
        for trade in data["p2p"]["trades"]:
            writer.writerow(["" if trade[k] is None else trade[k] for k in keys])
    return out.getvalue()


def statement_pdf(data: dict[str, Any]) -> bytes:
    """The statement as a printable one-or-more-page PDF (A4)."""

    def text(value: object) -> str:
        # The PDF's core fonts speak Latin-1; other characters print as '?'.
        return str(value).encode("latin-1", "replace").decode("latin-1")

    # Imported here: the PDF writer (with the imaging library under it) costs a home about
    # 40 MB of memory, for a statement an owner asks for once a month.
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.cell(0, 10, text(f"Energy statement {data['month']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, text(f"Owner: {data['name']} ({data['owner']})"), new_x="LMARGIN", new_y="NEXT")
    if data["account"]:
        pdf.cell(0, 6, text(f"Account: {data['account']}"), new_x="LMARGIN", new_y="NEXT")
    pdf.cell(
        0,
        6,
        text(f"Amounts in milli-{data['currency']}; energy in Wh"),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    pdf.ln(3)
    widths = (95, 30, 30, 35)
    pdf.set_font("Helvetica", "B", 10)
    for width, title in zip(widths, ("", "Energy (Wh)", "Price / kWh", "Amount"), strict=True):
        pdf.cell(width, 7, title, border="B")
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for line in _lines(data):
        for index, (width, value) in enumerate(zip(widths, line, strict=True)):
            pdf.cell(width, 6, text(value), align="L" if index == 0 else "R")
        pdf.ln()
    trades = data["p2p"]["trades"] if data["p2p"] is not None else []
    if trades:
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(0, 7, "Peer-to-peer trades", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", size=8)
        for t in trades:
            row = (
                f"{t['id'][:12]}  {t['role']:<6} {t['counterparty'][:14]}  {t['status']:<10} "
                f"{t['delivered_wh']}/{t['energy_wh']} Wh @ {t['price']}  paid {t['paid']}"
            )
            pdf.cell(0, 5, text(row), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())

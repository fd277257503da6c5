"""Command-line options both ways of founding a community share (`energy-p2p-edge genesis`
and `community found`): what they write into the genesis."""

from __future__ import annotations

import argparse
import math

from edge_controller.ledger import (
    DEFAULT_FORGET_AFTER_MS,
    MAX_FORGET_AFTER_MS,
    MIN_FORGET_AFTER_MS,
)

DAY_MS = 24 * 3_600_000


def forget_after_days(text: str) -> int:
    """`--forget-after-days`: a number of days as the genesis's `forget_after_ms`."""
    try:
        days = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    ms = round(days * DAY_MS) if math.isfinite(days) else -1
    if not MIN_FORGET_AFTER_MS <= ms <= MAX_FORGET_AFTER_MS:
        raise argparse.ArgumentTypeError(
            f"{text} days: choose from an hour (0.042) to {MAX_FORGET_AFTER_MS // DAY_MS} days"
        )
    return ms


def add_forget_after(parser: argparse.ArgumentParser) -> None:
    """The founding commands' `--forget-after-days` (written to the genesis as
    `consensus.forget_after_ms`)."""
    parser.add_argument(
        "--forget-after-days",
        dest="forget_after_ms",
        type=forget_after_days,
        default=DEFAULT_FORGET_AFTER_MS,
        metavar="DAYS",
        help="days a closed trade, offer or meter reading stays in every home's ledger: a "
        "trade can be rated or disputed until then, and one nobody settled is settled by the "
        f"ledger (default {DEFAULT_FORGET_AFTER_MS // DAY_MS}; fixed for the community's life)",
    )

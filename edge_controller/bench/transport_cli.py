"""`energy-p2p-edge bench transport`: its arguments, checked, and its printed figures."""

from __future__ import annotations

import argparse
import json
from typing import Any


def _within(kind: type[float] | type[int], low: float, high: float) -> Any:
    """An argparse type: a number of `kind` from `low` to `high`, else a usage error."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not from {low:g} to {high:g}")
        return value

    return parse


def add_transport(targets: Any) -> None:
    """Register `bench transport` on the bench command's subparsers."""
    parser = targets.add_parser(
        "transport",
        help="one Mosquitto against a three-node NATS cluster under a community's load",
        description="For each --homes count, simulated homes (one MQTT connection each, "
        "as the edge controller makes it) publish pre-signed offers, acceptances, meter "
        "readings, settlements and presence at a 15-minute-slot community's rate (times "
        "--speed), first through one Mosquitto, then through the NATS cluster of "
        "deploy/nats/; prints messages/s, delivery p50/p99, broker CPU and memory.",
    )
    parser.add_argument(
        "--homes",
        type=_within(int, 2, 5_000),
        nargs="+",
        default=[50, 200, 1000],
        help="default: 50 200 1000",
    )
    parser.add_argument(
        "--seconds",
        type=_within(float, 1, 3_600),
        default=60.0,
        help="sending time per run; default 60",
    )
    parser.add_argument(
        "--speed",
        type=_within(float, 0.1, 1_000),
        default=1.0,
        help="slots pass this many times faster; default 1",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run_transport)


def run_transport(args: argparse.Namespace) -> int:
    """Run the benchmark (its arguments checked by argparse) and print its figures."""
    # Imported here: the brokers and the load are not needed by any other command.
    from edge_controller.bench.transport import run_transport_benchmark

    figures = run_transport_benchmark(args.homes, args.seconds, args.speed, not args.json)
    print(json.dumps(figures, sort_keys=True) if args.json else json.dumps(figures, indent=2))
    return 0

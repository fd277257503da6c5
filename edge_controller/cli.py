"""The `energy-p2p-edge` command line.

Each subcommand is one `_add_*` function that registers its parser and the function that
runs it; `COMMANDS` lists them, so a new subcommand is one function and one line.
Exit codes: 0 success, 1 the thing checked is bad (e.g. an invalid chain), 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from edge_controller import __version__
from edge_controller.founding import add_forget_after
from edge_controller.ledger import (
    DEFAULT_FORGET_AFTER_MS,
    ChainFileError,
    Consensus,
    Genesis,
    KeyPair,
    Rejected,
    StoredChain,
)

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2

Subparsers = Any  # argparse's _SubParsersAction is private; its type is not exported
Run = Callable[[argparse.Namespace], int]

_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{1,11}\Z")
_PUBLIC_KEY = re.compile(r"[0-9a-f]{64}\Z")


class UsageError(Exception):
    """Bad input from the user: printed as `energy-p2p-edge: error: ...`, exit code 2."""


# --- keygen --------------------------------------------------------------------------------


def _add_keygen(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="create a node, registrar or meter key",
        description="Write a new Ed25519 private key as PEM (mode 0600) and print its "
        "public key and account id. Never overwrites an existing file.",
    )
    parser.add_argument("--out", type=Path, default=Path("node.key"), help="default: node.key")
    parser.set_defaults(run=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    path: Path = args.out
    key = KeyPair.generate()
    try:
        key.save(path)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite a key") from None
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None
    print(f"wrote {path} (private key, readable by you only)")
    print(f"public key  {key.public_hex}")
    print(f"account     {key.account}")
    return EXIT_OK


# --- genesis -------------------------------------------------------------------------------


def _add_genesis(subparsers: Subparsers) -> None:
    defaults = Consensus()
    parser = subparsers.add_parser(
        "genesis",
        help="create a community's genesis file",
        description="Create the genesis file that defines a community: its name, currency, "
        "registrars and consensus. Every home of the community starts from this file.",
    )
    parser.add_argument("--name", required=True, help="the community's name")
    parser.add_argument("--currency", required=True, metavar="CODE", help="e.g. SUN or EUR")
    parser.add_argument("--currency-name", default="", help="e.g. 'Sunny Street credits'")
    parser.add_argument("--consensus", choices=("poa", "pow"), default="poa")
    parser.add_argument(
        "--sealer",
        action="append",
        default=[],
        metavar="PUBHEX",
        help="public key of a node that may seal blocks (proof of authority; repeat)",
    )
    parser.add_argument(
        "--registrar",
        action="append",
        default=[],
        metavar="PUBHEX",
        required=True,
        help="public key that certifies resources and issues currency (repeat)",
    )
    parser.add_argument("--block-interval-ms", type=int, default=defaults.block_interval_ms)
    parser.add_argument(
        "--bits",
        type=int,
        default=None,
        help=f"initial proof-of-work difficulty in bits (default {defaults.initial_bits})",
    )
    parser.add_argument("--confirmations", type=int, default=defaults.confirmations)
    add_forget_after(parser)
    parser.add_argument("--out", type=Path, required=True, help="the genesis file to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    parser.set_defaults(run=_genesis)


def _public_keys(option: str, values: list[str]) -> tuple[str, ...]:
    keys = []
    for value in values:
        key = value.strip().lower()
        if not _PUBLIC_KEY.match(key):
            raise UsageError(f"{option} {value!r}: expected a public key of 64 hex characters")
        if key in keys:
            raise UsageError(f"{option} {value[:16]}... is given twice")
        keys.append(key)
    return tuple(keys)


def _genesis(args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name:
        raise UsageError("--name must not be empty")
    if not _CURRENCY.match(args.currency):
        raise UsageError(
            f"--currency {args.currency!r}: expected a code of 2 to 12 capital letters or "
            "digits starting with a letter, e.g. SUN"
        )
    registrars = _public_keys("--registrar", args.registrar)
    sealers = _public_keys("--sealer", args.sealer)
    defaults = Consensus()
    if args.consensus == "poa":
        if not sealers:
            raise UsageError("proof of authority needs at least one --sealer")
        if args.bits is not None:
            raise UsageError("--bits is a proof-of-work setting; drop it or use --consensus pow")
    elif sealers:
        raise UsageError("--sealer is a proof-of-authority setting; anyone may seal with pow")
    bits = defaults.initial_bits if args.bits is None else args.bits
    if args.consensus == "pow" and not defaults.min_bits <= bits <= defaults.max_bits:
        raise UsageError(f"--bits must be between {defaults.min_bits} and {defaults.max_bits}")
    genesis = Genesis(
        name=name,
        currency=args.currency,
        currency_name=args.currency_name,
        time=time.time_ns() // 1_000_000,
        registrars=registrars,
        consensus=Consensus(
            mode=args.consensus,
            block_interval_ms=args.block_interval_ms,
            sealers=sealers,
            initial_bits=bits,
            confirmations=args.confirmations,
            forget_after_ms=args.forget_after_ms,
        ),
    )
    try:
        # The same check every node applies when it loads the file.
        Genesis.from_json(genesis.to_json())
    except Rejected as exc:
        raise UsageError(_option_message(exc.message)) from None
    out: Path = args.out
    if out.exists() and not args.force:
        raise UsageError(f"{out} already exists; use --force to replace it")
    try:
        genesis.save(out)
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    print(f"wrote {out}")
    print(f"community id  {genesis.community_id}")
    return EXIT_OK


def _option_message(message: str) -> str:
    """Name the command-line option behind a genesis field in a validation message."""
    for field, option in (
        ("consensus.block_interval_ms", "--block-interval-ms"),
        ("consensus.confirmations", "--confirmations"),
        ("consensus.initial_bits", "--bits"),
        ("consensus.sealers", "--sealer"),
        ("genesis.registrars", "--registrar"),
        ("genesis.currency_name", "--currency-name"),
        ("genesis.name", "--name"),
    ):
        if field in message:
            return f"{option}: {message.split(': ', 1)[-1]}"
    return message


# --- ledger verify / export ----------------------------------------------------------------


def _add_ledger(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("ledger", help="check or export a stored ledger")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    verify = actions.add_parser(
        "verify",
        help="re-verify a whole stored chain",
        description="Replay the stored best chain from genesis, checking every header, "
        "signature (no cache) and rule, and compare the result with the stored state. "
        "Exit code 0 only if everything is valid.",
    )
    _add_ledger_files(verify)
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.add_argument("--quiet", action="store_true", help="no progress bar")
    verify.set_defaults(run=_ledger_verify)

    export = actions.add_parser(
        "export",
        help="print the stored chain as JSON lines",
        description="Print one JSON object per block of the best chain: height, hash, "
        "header, the sealer's signature and the signed records.",
    )
    _add_ledger_files(export)
    export.add_argument(
        "--from", dest="start", type=int, default=1, metavar="HEIGHT", help="default: 1"
    )
    export.set_defaults(run=_ledger_export)


def _add_ledger_files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--genesis", type=Path, required=True, help="the community's genesis")
    parser.add_argument("--db", type=Path, required=True, help="the node's ledger database")


def _load_genesis(path: Path) -> Genesis:
    try:
        return Genesis.load(path)
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"{path} is not JSON: {exc}") from None
    except Rejected as exc:
        raise UsageError(f"{path} is not a valid genesis file: {exc.message}") from None


def _open_chain(args: argparse.Namespace) -> StoredChain:
    genesis = _load_genesis(args.genesis)
    try:
        return StoredChain(args.db, genesis)
    except ChainFileError as exc:
        raise UsageError(str(exc)) from None


class ProgressBar:
    """A one-line text bar redrawn in place on a stream (no dependency, ~10 redraws/s)."""

    def __init__(self, total: int, stream: TextIO, width: int = 30) -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.width = width
        self._drawn_at = 0.0

    def update(self, blocks: int, records: int) -> None:
        """Redraw for `blocks` of `total` verified (skipped if drawn in the last 0.1 s)."""
        now = time.monotonic()
        if blocks < self.total and now - self._drawn_at < 0.1:
            return
        self._drawn_at = now
        done = min(blocks / self.total, 1.0)
        filled = int(done * self.width)
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(
            f"\r[{bar}] {done:4.0%}  block {blocks}/{self.total}  {records:,} records"
        )
        self.stream.flush()

    def finish(self) -> None:
        """End the bar's line so later output starts on a fresh one."""
        if self._drawn_at:
            self.stream.write("\n")
            self.stream.flush()


def _block_count(chain: StoredChain) -> int:
    # A damaged file may fail here already: verify then names the damage itself.
    try:
        return chain.block_count()
    except sqlite3.DatabaseError:
        return 0


def _ledger_verify(args: argparse.Namespace) -> int:
    chain = _open_chain(args)
    try:
        bar = None if args.quiet else ProgressBar(_block_count(chain), sys.stderr)
        report = chain.verify(bar.update if bar else None)
        if bar:
            bar.finish()
    finally:
        chain.close()
    if args.json:
        print(json.dumps(report.as_dict(), sort_keys=True))
    elif report.ok:
        print(
            f"ok: {report.blocks} blocks and {report.records:,} records are valid "
            f"({report.elapsed_s:.1f} s); state digest {report.digest}"
        )
    elif report.bad_height is not None:
        print(f"INVALID block {report.bad_height} {report.bad_hash or '(unreadable)'}")
        print(f"reason: {report.reason}: {report.message}")
        print(f"the {report.blocks} blocks before it ({report.records:,} records) are valid")
    else:
        print(f"INVALID store: {report.reason}: {report.message}")
    return EXIT_OK if report.ok else EXIT_INVALID


def _ledger_export(args: argparse.Namespace) -> int:
    if args.start < 0:
        raise UsageError("--from must be a height of 0 or more")
    chain = _open_chain(args)
    out = sys.stdout
    try:
        for block in chain.blocks(args.start):
            line = {
                "height": block.height,
                "hash": block.hash,
                "header": block.wire["header"],
                "sig": block.wire["sig"],
                "records": block.wire["records"],
            }
            out.write(json.dumps(line, separators=(",", ":"), sort_keys=True) + "\n")
        out.flush()
    except BrokenPipeError:
        # The reader (e.g. `head`) has all it wanted; that is not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        chain.close()
    return EXIT_OK


# --- bench ---------------------------------------------------------------------------------


def _add_bench(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser("bench", help="measure performance")
    targets = parser.add_subparsers(dest="target", required=True, metavar="TARGET")
    ledger = targets.add_parser(
        "ledger",
        help="ledger throughput against raw Ed25519, and chain verification",
        description="Measure raw Ed25519 verification and full ledger validation of "
        "signed trade records in the same run, then verify a stored chain of --records "
        "records in a subprocess for its time and peak memory.",
    )
    ledger.add_argument("--json", action="store_true", help="print one JSON object")
    ledger.add_argument("--records", type=int, default=100_000, help="default: 100000")
    ledger.set_defaults(run=_bench_ledger)
    market = targets.add_parser(
        "market",
        help="trading latency and node memory over a real broker",
        description="Start a broker and --homes edge controller processes (half sellers "
        "with simulated batteries, half automatic buyers); measure threshold to offer, offer "
        "to acceptance and acceptance to block (p50/p99) and each node's resident memory.",
    )
    market.add_argument("--homes", type=int, default=10, help="default: 10")
    market.add_argument("--offers", type=int, default=200, help="offers to time; default 200")
    market.add_argument("--json", action="store_true", help="print one JSON object")
    market.set_defaults(run=_bench_market)
    growth = targets.add_parser(
        "growth",
        help="node memory, open time, verification, catch-up and disk as the chain grows",
        description="Build a chain of the ledger benchmark's workload and measure, at 10k, "
        "100k, 300k, 1M ... records up to --max-records, what a node costs (docs/benchmarks.md).",
    )
    growth.add_argument("--max-records", type=int, default=1_000_000, help="default: 1000000")
    growth.add_argument("--live-slots", type=int, default=96, help="live slots; default 96 (a day)")
    growth.add_argument("--json", action="store_true", help="print one JSON object")
    growth.add_argument(
        "--no-join", action="store_true", help="skip the snapshot join (it builds its own chain)"
    )
    growth.add_argument(
        "--forget-after-hours",
        type=int,
        default=DEFAULT_FORGET_AFTER_MS // 3_600_000,
        help="the street's genesis forget_after_ms, in hours; default 168 (a week)",
    )
    growth.set_defaults(run=_bench_growth)

    from edge_controller.bench.transport_cli import add_transport

    add_transport(targets)


def _bench_market(args: argparse.Namespace) -> int:
    from edge_controller.bench.market import run_market_benchmark

    if not 2 <= args.homes <= 40:
        raise UsageError("--homes must be from 2 to 40")
    if args.offers < 1:
        raise UsageError("--offers must be at least 1")
    figures = run_market_benchmark(args.homes, args.offers, show_progress=not args.json)
    print(json.dumps(figures, sort_keys=True) if args.json else json.dumps(figures, indent=2))
    return EXIT_OK


def _bench_growth(args: argparse.Namespace) -> int:
    from edge_controller.bench.growth import format_report, run_growth

    if args.max_records < 1_000 or args.live_slots < 1:
        raise UsageError("--max-records must be at least 1000 and --live-slots at least 1")
    if args.forget_after_hours < 1:
        raise UsageError("--forget-after-hours must be at least 1")
    figures = run_growth(
        args.max_records,
        args.live_slots,
        show_progress=not args.json,
        join=not args.no_join,
        forget_after_ms=args.forget_after_hours * 3_600_000,
    )
    print(json.dumps(figures, sort_keys=True) if args.json else format_report(figures))
    return EXIT_OK


def _bench_ledger(args: argparse.Namespace) -> int:
    # Imported here: the benchmark's workload is not needed by any other command.
    from edge_controller.bench.ledger import format_report, run_ledger_benchmark

    if args.records < 100:
        raise UsageError("--records must be at least 100")
    figures = run_ledger_benchmark(args.records, show_progress=True)
    print(json.dumps(figures, sort_keys=True) if args.json else format_report(figures))
    return EXIT_OK


# --- the parser ----------------------------------------------------------------------------

# --- run and demo --------------------------------------------------------------------------
# Imported when used: they pull in aiohttp, MQTT and the broker, which `ledger verify` on a
# Pi should not pay for in memory or start-up time.


def _add_run(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run one home's edge controller",
        description="Run one home's edge controller from its configuration file. The file "
        "is checked first; every mistake is listed with its path and nothing starts.",
    )
    parser.add_argument("-c", "--config", type=Path, required=True, help="edge.yaml")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    from edge_controller.runner import run_from_file

    return run_from_file(args.config, args.verbose)


def _add_demo(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a small community of simulated homes trading (no setup needed)",
        description="Run simulated homes trading on an embedded MQTT broker; prints each "
        "home's API URL and token.",
    )
    parser.add_argument("--homes", type=int, default=3, help="how many homes (3 to 12)")
    parser.add_argument("--state-file", type=Path, help="write each home's API URL and token")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--data-dir", type=Path, help="keep the homes' data here")
    parser.add_argument(
        "--api-port", type=int, default=0, help="first API port (one per home); default: free"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(run=_demo)


def _demo(args: argparse.Namespace) -> int:
    from edge_controller.demo.embedded import demo_main

    return demo_main(
        args.homes, args.state_file, args.duration, args.data_dir, args.api_port, args.verbose
    )


def _add_devices(subparsers: Subparsers) -> None:
    from edge_controller.devices.commands import add_devices

    add_devices(subparsers)


def _add_statement(subparsers: Subparsers) -> None:
    from edge_controller.api.statement_client import add_statement

    add_statement(subparsers)


def _add_community(subparsers: Subparsers) -> None:
    from edge_controller.community.commands import add_parser

    add_parser(subparsers)


# Each command's parser, by name. A command's modules are imported only when its parser is
# built: `ledger verify` then costs the ledger's memory, not the API's, and neither does a
# signature worker process, which imports the command line's module as its main module.
COMMANDS: dict[str, Callable[[Subparsers], None]] = {
    "keygen": _add_keygen,
    "genesis": _add_genesis,
    "ledger": _add_ledger,
    "bench": _add_bench,
    "run": _add_run,
    "demo": _add_demo,
    "community": _add_community,
    "devices": _add_devices,
    "statement": _add_statement,
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand in `COMMANDS` (`only`: of that one alone)."""
    parser = argparse.ArgumentParser(prog="energy-p2p-edge", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, add in COMMANDS.items():
        if only is None or name == only:
            add(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    run: Run = args.run
    try:
        return run(args)
    except UsageError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

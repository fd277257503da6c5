"""`energy-p2p-edge statement`: fetch a monthly statement from the running edge controller
(its API, with the token from its data directory) and print or save it."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from edge_controller.config import ConfigError, load_config

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
TIMEOUT_S = 30


def add_statement(subparsers: Any) -> None:
    """Register `statement` with the command line's subparsers."""
    parser = subparsers.add_parser(
        "statement",
        help="print or save an owner's monthly statement (JSON, CSV or PDF)",
        description="Ask the running edge controller for an owner's statement of a month: "
        "energy bought and sold (peer to peer, shared, grid), prices, fees, disputes and "
        "ratings.",
    )
    parser.add_argument("-c", "--config", type=Path, required=True, help="edge.yaml")
    parser.add_argument("--owner", required=True, help="a building owner's id or an account")
    parser.add_argument("--month", required=True, help="YYYY-MM (UTC)")
    parser.add_argument("--format", choices=("json", "csv", "pdf"), default="csv")
    parser.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    parser.set_defaults(run=run_statement)


def run_statement(args: argparse.Namespace) -> int:
    """Fetch the statement; 1 when the edge controller refuses or cannot be reached."""
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_USAGE
    token = config.path(config.api.token_file).read_text().strip()
    host = "127.0.0.1" if config.api.host in ("0.0.0.0", "") else config.api.host
    query = urllib.parse.urlencode(
        {"owner": args.owner, "month": args.month, "format": args.format}
    )
    request = urllib.request.Request(
        f"http://{host}:{config.api.port}/api/v1/statements?{query}",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            data: bytes = response.read()
    except urllib.error.HTTPError as error:
        print(f"refused: {error.read().decode('utf-8', 'replace')}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"cannot reach the edge controller: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.output is not None:
        args.output.write_bytes(data)
    elif args.format == "pdf":
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data.decode("utf-8"))
    return EXIT_OK

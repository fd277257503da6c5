"""`energy-p2p-edge community ...`: each step of a community as one command.

`found`, `invite` and `join` write files (no edge controller needs to run); the rest ask
the registrar's running edge controller through its API (`-c` its edge.yaml), so the
command line, Home Assistant and scripts do one and the same thing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from edge_controller.community.book import Registry
from edge_controller.community.errors import CommunityError, Problem
from edge_controller.community.invitation import read_invitation_text
from edge_controller.community.operations import DEFAULT_VALID_HOURS, found, invite, join
from edge_controller.config import ConfigError, load_config
from edge_controller.founding import add_forget_after
from edge_controller.ledger import KeyPair

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
_CURRENCY = re.compile(r"[A-Z][A-Z0-9]{1,11}\Z")
API_TIMEOUT_S = 30


def _now() -> int:
    return time.time_ns() // 1_000_000


def add_parser(subparsers: Any) -> None:
    """Register `community` and its actions."""
    parser = subparsers.add_parser(
        "community",
        help="found a community, invite and join homes, approve them, run it",
        description="Start a community with your neighbours: found, invite, join, approve.",
    )
    actions = parser.add_subparsers(dest="action", required=True)

    p = actions.add_parser("found", help="create a new community in a new folder")
    p.add_argument("--name", required=True, help='the community\'s name, e.g. "Elm Street"')
    p.add_argument("--currency", required=True, help="its currency code, e.g. ELM")
    p.add_argument("--home", required=True, help="your own home's name (the first member)")
    p.add_argument("--broker-host", required=True, help="the community broker's host name")
    p.add_argument("--broker-port", type=int, default=8883)
    p.add_argument("--block-interval-ms", type=int, default=5_000)
    add_forget_after(p)
    p.add_argument("--out", type=Path, required=True, help="a new folder for the community")
    p.add_argument(
        "--devices-from", type=Path, help="an edge.yaml whose devices your home registers"
    )
    p.set_defaults(run=_guard(_found))

    p = actions.add_parser("invite", help="invite a home (a file, a text and a QR code)")
    p.add_argument("home", help='the home\'s name, e.g. "Sunny House"')
    p.add_argument("--registrar", type=Path, required=True, help="the community's registrar folder")
    p.add_argument("--valid-hours", type=int, default=DEFAULT_VALID_HOURS)
    p.set_defaults(run=_guard(_invite))

    p = actions.add_parser("join", help="join a community with an invitation")
    p.add_argument("invitation", help="the invitation's file, its text, or - to read it")
    p.add_argument("-c", "--config", type=Path, required=True, help="this home's edge.yaml")
    p.add_argument("--name", help="this home's display name (default: the invitation's)")
    p.set_defaults(run=_guard(_join))

    for name, text in (
        ("requests", "list the membership requests waiting for approval"),
        ("members", "list the community's members"),
        ("status", "this home's membership"),
    ):
        p = actions.add_parser(name, help=text)
        _config(p)
        p.set_defaults(run=_guard(_reader(name)))

    p = actions.add_parser("approve", help="approve a membership request")
    p.add_argument("request", help="the request's id (see requests)")
    p.add_argument("--topup", type=int, default=0, help="opening top-up, milli-units")
    p.add_argument(
        "--no-sealer",
        dest="sealer",
        action="store_false",
        help="do not add the home to the sealers (by default it seals blocks too)",
    )
    _config(p)
    p.set_defaults(run=_guard(_approve))

    p = actions.add_parser("sealer", help="add a home to the sealers, or remove it")
    p.add_argument("action", choices=("add", "remove"))
    p.add_argument("home", help="the home's account (ep...) or node public key")
    _config(p)
    p.set_defaults(run=_guard(_sealer))

    p = actions.add_parser("deny", help="deny a membership request")
    p.add_argument("request")
    p.add_argument("--reason", default="")
    _config(p)
    p.set_defaults(run=_guard(_deny))

    p = actions.add_parser("topup", help="issue money to a member's account")
    p.add_argument("account")
    p.add_argument("amount", type=int, help="milli-units of the community currency")
    p.add_argument("--memo", default="")
    _config(p)
    p.set_defaults(run=_guard(_topup))

    p = actions.add_parser("resource", help="change a resource's rating, capacity or energy")
    p.add_argument("resource")
    p.add_argument("--power-w", type=int)
    p.add_argument("--capacity-wh", type=int)
    p.add_argument("--available-wh", type=int)
    p.add_argument("--owner", help="a new resource: the member's account")
    p.add_argument("--kind", help="a new resource: pv, battery, fuel_cell, usb_port or meter")
    p.add_argument("--meter", help="a new resource: its meter's public key (default: the owner's)")
    _config(p)
    p.set_defaults(run=_guard(_resource))

    for name, text in (
        ("leave", "record that a member left (it may only close what it holds)"),
        ("revoke", "revoke a member's lost key (it then joins again with a new one)"),
    ):
        p = actions.add_parser(name, help=text)
        p.add_argument("account")
        _config(p)
        p.set_defaults(run=_guard(_standing(name)))


def _config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c", "--config", type=Path, required=True, help="the registrar's home's edge.yaml"
    )


def _guard(action: Any) -> Any:
    """`action`, printing a refusal's code and message (exit 1) instead of a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            result: int = action(args)
        except CommunityError as exc:
            print(f"energy-p2p-edge: refused ({exc.code.value}): {exc.message}", file=sys.stderr)
            return EXIT_REFUSED
        return result

    return run


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _found(args: argparse.Namespace) -> int:
    if not _CURRENCY.match(args.currency):
        raise CommunityError(
            Problem.BAD_INPUT, "the currency is 2 to 12 capitals and digits, e.g. ELM"
        )
    result = found(
        args.out,
        name=args.name,
        currency=args.currency,
        home=args.home,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        now=_now(),
        block_interval_ms=args.block_interval_ms,
        forget_after_ms=args.forget_after_ms,
        devices_from=args.devices_from,
    )
    print(f"founded {args.name} ({result['community']}) in {args.out}")
    print(f"  broker:    mosquitto -c {result['broker']}")
    print(f"  your home: energy-p2p-edge run -c {result['home']}")
    print(f"  then:      energy-p2p-edge community requests -c {result['home']}")
    return EXIT_OK


def _invite(args: argparse.Namespace) -> int:
    registry = Registry(args.registrar)
    try:
        key = KeyPair.load(registry.key_file)
    except (OSError, ValueError):
        raise CommunityError(
            Problem.NOT_REGISTRAR, f"{registry.key_file} is not a registrar key"
        ) from None
    result = invite(registry, key, args.home, args.valid_hours, _now())
    print(f"invitation for {result['home']} (login {result['login']}), good once:")
    print(f"  file: {result['file']}")
    print(f"  QR:   {result['qr_file']}")
    print(f"  text: {result['text']}")
    return EXIT_OK


def _join(args: argparse.Namespace) -> int:
    given: str = args.invitation
    if given == "-":
        text = sys.stdin.read()
    elif given.lstrip().startswith(("EP2P1:", "{")):
        text = given
    else:
        try:
            text = Path(given).read_text()
        except OSError as exc:
            raise CommunityError(
                Problem.MALFORMED_INVITATION, f"cannot read {given}: {exc.strerror}"
            ) from None
    args.config.parent.mkdir(parents=True, exist_ok=True)
    result = join(read_invitation_text(text), args.config, now=_now(), name=args.name)
    print(f"joined as {result['name']} ({result['account']}); resources asked for:")
    for r in result["resources"]:
        print(f"  {r['resource']}: {r['kind']}, {r['power_w']} W, {r['capacity_wh']} Wh")
    print(f"start it: energy-p2p-edge run -c {result['config']}")
    print("it sends your request to the registrar, who approves it")
    return EXIT_OK


def call_api(config_path: Path, method: str, path: str, data: Any = None) -> Any:
    """Call the API of the edge controller `config_path` configures."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        raise CommunityError(Problem.BAD_INPUT, str(exc)) from None
    host = "127.0.0.1" if config.api.host in ("0.0.0.0", "::", "") else config.api.host
    try:
        token = config.path(config.api.token_file).read_text().strip()
    except OSError as exc:
        raise CommunityError(
            Problem.BAD_INPUT, f"no API token ({exc.strerror}): is the edge controller running?"
        ) from None
    request = urllib.request.Request(
        f"http://{host}:{config.api.port}/api/v1/{path}",
        method=method,
        data=None if data is None else json.dumps(data).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=API_TIMEOUT_S) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            error = json.loads(exc.read())["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = str(exc.code), exc.reason
        print(f"energy-p2p-edge: refused ({code}): {message}", file=sys.stderr)
        raise SystemExit(EXIT_REFUSED) from None
    except OSError as exc:
        raise CommunityError(
            Problem.BAD_INPUT, f"the edge controller does not answer ({exc}): is it running?"
        ) from None


_READERS = {
    "requests": "community/requests",
    "members": "members",
    "status": "community/membership",
}


def _reader(name: str) -> Any:
    def read(args: argparse.Namespace) -> int:
        _print(call_api(args.config, "GET", _READERS[name]))
        return EXIT_OK

    return read


def _approve(args: argparse.Namespace) -> int:
    body = {"topup": args.topup, "sealer": args.sealer}
    _print(call_api(args.config, "POST", f"community/requests/{args.request}/approve", body))
    return EXIT_OK


def _sealer(args: argparse.Namespace) -> int:
    _print(call_api(args.config, "POST", f"community/sealers/{args.home}/{args.action}"))
    return EXIT_OK


def _deny(args: argparse.Namespace) -> int:
    body = {"reason": args.reason}
    _print(call_api(args.config, "POST", f"community/requests/{args.request}/deny", body))
    return EXIT_OK


def _topup(args: argparse.Namespace) -> int:
    body = {"account": args.account, "amount": args.amount, "memo": args.memo}
    _print(call_api(args.config, "POST", "community/topups", body))
    return EXIT_OK


def _resource(args: argparse.Namespace) -> int:
    changes: dict[str, Any] = {
        name: value
        for name, value in (
            ("power_w", args.power_w),
            ("capacity_wh", args.capacity_wh),
            ("available_wh", args.available_wh),
            ("owner", args.owner),
            ("kind", args.kind),
            ("meter", args.meter),
        )
        if value is not None
    }
    _print(call_api(args.config, "POST", f"community/resources/{args.resource}", changes))
    return EXIT_OK


def _standing(name: str) -> Any:
    def change(args: argparse.Namespace) -> int:
        _print(call_api(args.config, "POST", f"community/members/{args.account}/{name}"))
        return EXIT_OK

    return change

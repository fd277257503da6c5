"""One demo home as its own edge controller process:
`python -m edge_controller.demo.home FILE SLUG`.

FILE (written by `edge_controller.demo.layouts.ProcessCommunity`) names the community: the
genesis, the moment the homes were planned, the broker, and each home's keys and API port.
The home is the one `edge_controller.simulation.plan.plan_homes` plans under SLUG (the same
simulated hardware, devices and owner's policy as in the single-process demo), run exactly
as the demo runs it: a `Home` with its API, and its simulated world (devices and control
topics) on the same broker. When its API is up and its world is on the broker it prints
`ready <url> <account>` and writes `<SLUG>.json` beside FILE with its URL and token. The
consumer gets the demo's virtual hub and meter (its phone is plugged in through the
control topics); with `--phone-buys` the phone is paired and buys a charge by itself, as
in the one-process demo (the end-to-end test pairs and buys through the APIs instead).
SIGTERM or SIGINT stops it cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from edge_controller.api import ApiServer
from edge_controller.api.community import COMMUNITY_KEY
from edge_controller.app.home import Home
from edge_controller.app.identity import load_or_create_token
from edge_controller.community import CommunityService
from edge_controller.demo.embedded import SETTLEMENT_PERIOD_MS
from edge_controller.demo.phones import phone_buys_a_charge
from edge_controller.devices import SystemClock
from edge_controller.ledger import Genesis, KeyPair
from edge_controller.network import BrokerSettings
from edge_controller.runner import setup_logging
from edge_controller.simulation.plan import plan_homes
from edge_controller.simulation.world import serve_worlds


async def run_home(community_file: Path, slug: str, phone_buys: bool = False) -> int:
    community: dict[str, Any] = json.loads(await asyncio.to_thread(community_file.read_text))
    folder = community_file.parent
    clock = SystemClock()
    plans = {p.slug: p for p in plan_homes(community["homes"], community["planned_ms"])}
    plan = plans[slug]
    mine = community["keys"][slug]
    plan.key = KeyPair.load(Path(mine["node"]))
    plan.meter = KeyPair.load(Path(mine["meter"]))
    broker = BrokerSettings(host=community["broker"]["host"], port=community["broker"]["port"])
    data_dir = folder / slug
    world = plan.simulate(clock)
    home = Home(
        name=plan.name,
        data_dir=data_dir,
        genesis=Genesis.load(Path(community["genesis"])),
        node_key=plan.key,
        meter_key=plan.meter,
        community_broker=broker,
        devices=tuple(plan.devices),
        policy=plan.policy,
        clock=clock,
        control_interval_ms=1_000,
        settlement_period_ms=SETTLEMENT_PERIOD_MS,
        # The consumer's virtual hub and meter, exactly as in the one-process demo.
        usb=plan.usb,
        usb_backend=world.usb_backend,
        building=plan.building_config(),
    )
    token = load_or_create_token(data_dir / "api-token")
    api = ApiServer(home, token, "127.0.0.1", int(mine["api_port"]))
    registrar = community.get("registrar") or {}
    keeps_registrar = registrar.get("home") == slug
    membership = CommunityService(
        node=home.node,
        data_dir=data_dir,
        broker=broker,
        registrar_dir=Path(registrar["directory"]) if keeps_registrar else None,
        broker_dir=folder / "broker",
    )
    api.app[COMMUNITY_KEY] = membership
    devices_and_phone = [asyncio.create_task(serve_worlds(broker.host, broker.port, [world]))]
    await home.start()
    await membership.start()
    await api.start()
    # Ready once the control topics are subscribed: the launcher plugs the phone in next.
    for _ in range(400):
        if world.connected:
            break
        await asyncio.sleep(0.05)
    if phone_buys and home.usb is not None:
        # As in the one-process demo: the owner pairs the phone and it buys a charge.
        devices_and_phone.append(asyncio.create_task(phone_buys_a_charge(home)))
    state = {
        "name": plan.name,
        "slug": slug,
        "account": home.account,
        "url": api.url,
        "token": token,
    }
    state_file = folder / f"{slug}.json"
    await asyncio.to_thread(_write_whole, state_file, json.dumps(state))
    print(f"ready {api.url} {home.account}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for task in devices_and_phone:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await api.stop()
    await membership.stop()
    await home.stop()
    return 0


def _write_whole(path: Path, text: str) -> None:
    """Write `path` whole or not at all (the launcher polls for it)."""
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.home", description=__doc__)
    parser.add_argument("community", type=Path, help="the community file")
    parser.add_argument("slug", help="which planned home, e.g. solar-1")
    parser.add_argument(
        "--phone-buys",
        action="store_true",
        help="pair the consumer's virtual phone and let it buy a charge (as the demo does)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return asyncio.run(run_home(args.community, args.slug, args.phone_buys))


if __name__ == "__main__":
    sys.exit(main())

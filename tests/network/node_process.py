"""A node in its own process, for tests that kill it with SIGKILL.

    python node_process.py --port P --node ID --outbox FILE [--publish N] (--hold | --drain)

Prints one line per milestone on stdout (``connected``, ``acked N``, ``drained``) so the
test knows when to act; ``--hold`` then waits forever for the kill.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from edge_controller.network import BrokerSettings, CommunityLink, LinkLimits, MessageKind


async def main(args: argparse.Namespace) -> None:
    link = CommunityLink(
        node_id=args.node,
        community_id=args.community,
        broker=BrokerSettings(host="127.0.0.1", port=args.port),
        outbox_path=Path(args.outbox),
        limits=LinkLimits(reconnect_initial_s=0.05, reconnect_max_s=0.5),
    )
    await link.start()
    if args.wait_connected:
        await link.wait_connected()
        print("connected", flush=True)
    for number in range(args.publish):
        await link.publish(MessageKind.RECORD, {"type": "offer", "number": number})
    if args.publish:
        print(f"acked {args.publish}", flush=True)
    if args.drain:
        await link.wait_outbox_empty()
        await link.stop()
        print("drained", flush=True)
        return
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--community", default="test-community")
    parser.add_argument("--outbox", required=True)
    parser.add_argument("--publish", type=int, default=0)
    parser.add_argument("--wait-connected", action="store_true")
    parser.add_argument("--drain", action="store_true")
    asyncio.run(main(parser.parse_args()))

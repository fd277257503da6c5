"""A home with several broker addresses moves to the next when its broker is lost.

Two real Mosquittos stand for two nodes of a cluster; a home that loses the first
reconnects to the second with what its outbox held, and a receiver gets each message once.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from edge_controller.network import BrokerSettings, CommunityLink, InboundMessage, MessageKind
from tests.conftest import Mosquitto, free_port

from .conftest import LinkFactory

WaitUntil = Callable[[Callable[[], bool], float], Awaitable[None]]


@pytest.fixture
def two_brokers(tmp_path: Path) -> Iterator[tuple[Mosquitto, Mosquitto]]:
    brokers = []
    for name in ("first", "second"):
        port = free_port()
        config = tmp_path / f"{name}.conf"
        config.write_text(
            f"listener {port} 127.0.0.1\nuser {getpass.getuser()}\nallow_anonymous true\n"
        )
        broker = Mosquitto(port=port, config=config)
        broker.start()
        brokers.append(broker)
    try:
        yield brokers[0], brokers[1]
    finally:
        for broker in brokers:
            broker.stop()


async def test_a_home_moves_to_the_next_address_with_its_outbox_and_nothing_twice(
    two_brokers: tuple[Mosquitto, Mosquitto], make_link: LinkFactory, wait_until: WaitUntil
) -> None:
    first, second = two_brokers
    # The cluster's nodes share sessions; two separate brokers do not, so the receiver
    # sits on the second one, where the home arrives.
    home = make_link(
        "home",
        BrokerSettings(
            host="127.0.0.1",
            port=free_port(),  # a node that is down: skipped at once
            alternates=(("127.0.0.1", first.port), ("127.0.0.1", second.port)),
            connect_timeout_s=2.0,
        ),
    )
    receiver = make_link("receiver", BrokerSettings(host="127.0.0.1", port=second.port))
    got: list[InboundMessage] = []

    async def keep(message: InboundMessage) -> None:
        got.append(message)

    receiver.on_message(MessageKind.RECORD, keep)
    await receiver.start()
    await home.start()
    async with asyncio.timeout(20):
        await home.wait_connected()
        await receiver.wait_connected()
    assert home.stats().address == f"127.0.0.1:{first.port}"

    first.stop()
    await wait_until(lambda: not home.connected, 10)
    sent = [await home.publish(MessageKind.RECORD, {"n": n}) for n in range(20)]
    await wait_until(lambda: len(got) >= 20, 20)
    assert home.stats().address == f"127.0.0.1:{second.port}"
    assert [m.message_id for m in got] == sent
    # The outbox forgets a message on the broker's PUBACK, which may come after delivery.
    await wait_until(lambda: home.stats().outbox_pending == 0, 10)


def test_one_address_is_still_one_broker() -> None:
    settings = BrokerSettings(host="broker", port=1884)
    assert settings.addresses == (("broker", 1884),)


def test_a_link_starts_on_the_first_address(tmp_path: Path) -> None:
    link = CommunityLink(
        node_id="n",
        community_id="c",
        broker=BrokerSettings(host="a", port=1, alternates=(("b", 2),)),
        outbox_path=tmp_path / "o.sqlite3",
    )
    assert link.stats().address == "a:1"

"""A new home joining from a snapshot keeps a bounded window of headers in memory, whatever
the chain's length, and spools the rest to a scratch table it deletes when done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import Reason, Rejected, state_digest
from edge_controller.ledger.snapshot import HEADER_SPOOL, header_window

from .snapshot_support import Net, grow, joiner, sqlite_node, time_bound
from .support import Community

bounded = time_bound(90)

INTERVAL = 4
DEPTH = 8
BLOCKS = 3_000


def test_a_join_over_a_long_chain_keeps_a_bounded_window_of_headers(tmp_path: Path) -> None:
    community = Community(sealers=3, checkpoint_interval=INTERVAL, finality_depth=DEPTH)
    server = sqlite_node(community, tmp_path, "server")
    seller, buyer = community.key("seller"), community.key("buyer")
    grow(community, server, 1, community.register("pv/1", seller), community.topup(buyer))
    grow(community, server, BLOCKS)
    net = Net()
    net.add("server", server)
    ledger = sqlite_node(community, tmp_path, "new")
    sync = net.add("new", ledger)
    folder = tmp_path / "new.snapshots"
    join = joiner(ledger, folder, community.now)
    sync.joiner = join
    window = header_window(community.genesis)
    assert window == DEPTH + INTERVAL + 1
    most, spooled = 0, False
    take = join._take_header

    def counting(item: Any, now: int) -> Any:
        nonlocal most, spooled
        taken = take(item, now)
        most = max(most, len(join.entries))
        spooled = spooled or (folder / HEADER_SPOOL).exists()
        assert join.status().headers == join.entries[-1].height
        return taken

    join._take_header = counting  # type: ignore[method-assign]
    for _ in range(4):
        net.tick(community.now)
    assert join.phase == "installed", join.status()
    assert most == window < BLOCKS // 100, most
    assert spooled and not (folder / HEADER_SPOOL).exists()
    checkpoint = server.final_height - server.final_height % INTERVAL
    assert join.target == checkpoint > BLOCKS - window
    assert ledger.base_height == checkpoint - 1
    assert ledger.height == server.height and ledger.head.hash == server.head.hash
    assert state_digest(ledger.state) == state_digest(server.state)
    # Every header below the checkpoint came from the spool, as the server holds it.
    for height in (1, checkpoint // 2, checkpoint - 1):
        assert ledger.main[height] == server.main[height]
    ledger.close()
    again = sqlite_node(community, tmp_path, "new")
    assert again.head.hash == server.head.hash
    assert state_digest(again.state) == state_digest(server.state)


def test_a_check_reaching_below_the_window_is_refused_not_a_crash(tmp_path: Path) -> None:
    community = Community(sealers=3, checkpoint_interval=INTERVAL, finality_depth=DEPTH)
    server = sqlite_node(community, tmp_path, "server")
    grow(community, server, 5 * INTERVAL)
    ledger = sqlite_node(community, tmp_path, "new")
    join = joiner(ledger, tmp_path / "new.snapshots", community.now)
    join.phase = "headers"
    for height in range(1, server.height + 1):
        block = server.block_at(height)
        assert block is not None
        join._take_header({"header": block.header.to_json(), "sig": block.sig.hex()}, community.now)
    head = join.entries[-1]
    lowest = head.height - join.window + 1
    assert join.window == 13 and join._ancestor(head, lowest).height == lowest
    with pytest.raises(Rejected) as info:
        join._ancestor(head, head.height - join.window)
    assert info.value.reason is Reason.BAD_SNAPSHOT and "window" in info.value.message

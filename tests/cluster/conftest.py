"""Fixtures of the cluster tests: a three-node NATS cluster from deploy/nats/ and homes on it."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_controller.bench.brokers import BrokerMissing, NatsCluster, nats_binary
from edge_controller.processes import EdgeProcess
from tests.edge.support import Community


def _require_nats() -> None:
    try:
        nats_binary()
    except BrokerMissing as missing:
        pytest.skip(str(missing))


@dataclass
class ClusterStreet:
    """A community whose homes meet on a NATS cluster, each logged in as its node id."""

    community: Community
    cluster: NatsCluster
    passwords: dict[str, str]
    homes: dict[str, EdgeProcess] = field(default_factory=dict)

    def config(self, home: str, first_node: int, policy: dict[str, Any] | None = None) -> Path:
        """Write the home's edge.yaml: every node's address, starting with `first_node`."""
        path = self.community.config(home, 1, policy=policy)
        document = yaml.safe_load(path.read_text())
        addresses = self.cluster.addresses
        ordered = addresses[first_node:] + addresses[:first_node]
        document["community_broker"] = {
            "addresses": [{"host": host, "port": port} for host, port in ordered],
            "username": self.community.account(home),
            "password": self.passwords[home],
            "tls": {"ca_file": str(self.cluster.certificates.ca_file)},
        }
        path.write_text(yaml.safe_dump(document))
        return path


@pytest.fixture
def nats_street(tmp_path: Path) -> Iterator[ClusterStreet]:
    """Five homes' keys and logins, and the three-node cluster running (homes not started)."""
    _require_nats()
    names = ["h0", "h1", "h2", "h3", "h4"]
    community = Community(tmp_path / "homes", names, block_interval_ms=1_000)
    passwords = {name: secrets.token_hex(12) for name in names}
    logins = {community.account(name): passwords[name] for name in names}
    cluster = NatsCluster(tmp_path / "nats", community.genesis.community_id, logins)
    street = ClusterStreet(community, cluster, passwords)
    try:
        cluster.start()
        yield street
    finally:
        for home in street.homes.values():
            home.stop()
        cluster.stop()

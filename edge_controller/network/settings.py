"""How a node reaches its community broker and how hard it defends itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BrokerSettings:
    """Where the community broker is and how to log in to it.

    TLS is used when ``tls_ca_file`` is set; ``tls_cert_file`` and ``tls_key_file`` add a
    client certificate for brokers that require one. ``alternates`` are further addresses
    of the same logical broker (the other nodes of a cluster), tried in turn after
    ``host``:``port`` whenever the current one is lost; login and TLS are the same for all.
    """

    host: str
    port: int = 1883
    alternates: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    # Tried in turn when the broker refuses `password`: a home that joined tries its own
    # password first and its invitation's until the registrar's approval puts its own in
    # force (the invitation's then stops working, so a copy of it opens nothing).
    fallback_passwords: tuple[str, ...] = ()
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # None: derived from the node id, which is unique because it comes from the node's key.
    client_id: str | None = None
    keepalive_s: int = 30
    # Also how long a connection closed before the broker's CONNACK goes unnoticed
    # (aiomqtt waits for the CONNACK only), so it is kept short.
    connect_timeout_s: float = 5.0

    @property
    def passwords(self) -> tuple[str | None, ...]:
        """`password`, then each fallback."""
        return (self.password, *self.fallback_passwords)

    @property
    def addresses(self) -> tuple[tuple[str, int], ...]:
        """Every address of the broker, the first one first."""
        return ((self.host, self.port), *self.alternates)


@dataclass(frozen=True)
class LinkLimits:
    """Inbound limits, reconnect pacing and the outbox batch size."""

    # Blocks are the largest messages; the broker should enforce the same bound
    # (mosquitto `message_size_limit`) so oversized packets never reach the node.
    max_message_bytes: int = 512 * 1024
    # A catching-up node receives bursts of sync answers, hence a generous burst.
    rate_per_second: float = 50.0
    rate_burst: int = 200
    max_tracked_senders: int = 4096
    recent_ids: int = 10_000
    inbound_queue: int = 10_000
    reconnect_initial_s: float = 0.5
    reconnect_max_s: float = 30.0
    publish_timeout_s: float = 10.0
    # A connection that carried no acknowledged message for this long sends a probe at
    # QoS 1 to the node's own inbox: a broker that accepts the connection but can store
    # nothing (a NATS cluster without quorum) withholds the PUBACK, and the link moves on.
    probe_interval_s: float = 10.0
    # Also the most a burst can be reordered in flight; it stays below the ledger's
    # 64-wide sequence window, so no record of a burst becomes stale by reordering.
    outbox_batch: int = 32
    # Sync messages to one node: a catching-up peer asks a few times a second at most.
    sync_rate_per_peer: float = 20.0
    sync_burst_per_peer: int = 40
    sync_rate_total: float = 200.0
    sync_burst_total: int = 400
    # Refusals are logged once per reason per interval, the rest summed up (RefusalLog).
    refusal_log_interval_s: float = 60.0
    # Our own sending is paced below what a peer with these same limits lets a sender
    # through (`rate_per_second`, `rate_burst`), so no burst of ours is rate limited away.
    publish_share: float = 0.8
    # Inbound messages wait in one queue (`inbound_queue` at most), each sender's kind of
    # message at most `lane_per_sender`; senders the app does not know (`known_sender`)
    # share `lane_strangers` per kind, so a flood under changing ids cannot crowd out peers.
    lane_per_sender: int = 2_000
    lane_strangers: int = 500

    @property
    def publish_rate(self) -> float:
        """Messages per second this node sends at most, on average."""
        return self.rate_per_second * self.publish_share

    @property
    def publish_burst(self) -> int:
        """Messages this node sends at once at most."""
        return max(1, min(self.outbox_batch, int(self.rate_burst * self.publish_share / 2)))

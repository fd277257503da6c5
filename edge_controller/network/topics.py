"""The MQTT topic layout of one community, kept in one place.

Every community has its own namespace under ``energy-p2p/<community-id>/``:

=============================  =========  ========  ==============================================
topic                          QoS        retained  carries
=============================  =========  ========  ==============================================
``.../records``                1          no        new signed records (offers, acceptances, ...)
``.../blocks``                 1          no        new blocks
``.../sync/<node-id>``         1          no        sync requests and answers addressed to one node
``.../status/<node-id>``       1          yes       the node's presence: ``online`` / ``offline``
=============================  =========  ========  ==============================================

Records, blocks and sync messages travel in an envelope (see ``envelope.py``); status
messages are small JSON objects of their own because the broker publishes the offline
one as the node's last will.

The layout is what both Mosquitto and NATS's MQTT listener (``deploy/nats/``) accept: MQTT
3.1.1, QoS 0 and 1 only, and ids without ``.`` or spaces (NATS turns topic levels into
subject tokens and closes the connection of a client publishing either) nor NATS's
wildcards ``*`` and ``>``. `TopicRules` is the one statement of what a home may publish and
subscribe to, from which the brokers' ACLs are written.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

ROOT = "energy-p2p"

# MQTT gives "/+#" a meaning inside topics; NATS's MQTT listener refuses "." and " " in a
# topic and gives "*" and ">" a meaning in its subjects and permissions: no id may hold any.
_FORBIDDEN_IN_IDS = frozenset("/+#\0. *>")


class MessageKind(StrEnum):
    """What a message on the community's topics is."""

    RECORD = "record"
    BLOCK = "block"
    SYNC = "sync"
    STATUS = "status"


# Records and blocks go to every node; sync messages are addressed to one node.
BROADCAST_KINDS = frozenset({MessageKind.RECORD, MessageKind.BLOCK})

_SEGMENT_OF_KIND = {
    MessageKind.RECORD: "records",
    MessageKind.BLOCK: "blocks",
    MessageKind.SYNC: "sync",
    MessageKind.STATUS: "status",
}
_KIND_OF_SEGMENT = {segment: kind for kind, segment in _SEGMENT_OF_KIND.items()}


def is_valid_id(value: str) -> bool:
    """True when ``value`` can be one topic level on every broker: non-empty, printable, no
    MQTT or NATS wildcards, no dot, no space."""
    return (
        0 < len(value) <= 128
        and value.isprintable()
        and not any(ch in _FORBIDDEN_IN_IDS for ch in value)
    )


@dataclass(frozen=True)
class TopicAddress:
    """Where a received message came in: its kind and, for sync and status, the node."""

    kind: MessageKind
    node_id: str | None


class CommunityTopics:
    """The topics of one community: ``energy-p2p/<community-id>/...``."""

    def __init__(self, community_id: str) -> None:
        if not is_valid_id(community_id):
            raise ValueError(f"community id {community_id!r} cannot be an MQTT topic level")
        self.community_id = community_id
        self.base = f"{ROOT}/{community_id}"

    @property
    def records(self) -> str:
        """Topic of new signed records, broadcast to every node."""
        return f"{self.base}/records"

    @property
    def blocks(self) -> str:
        """Topic of new blocks, broadcast to every node."""
        return f"{self.base}/blocks"

    def sync(self, node_id: str) -> str:
        """Topic of sync messages addressed to ``node_id``."""
        return f"{self.base}/sync/{_checked(node_id)}"

    def status(self, node_id: str) -> str:
        """Retained presence topic of ``node_id``."""
        return f"{self.base}/status/{_checked(node_id)}"

    @property
    def all_statuses(self) -> str:
        """Subscription filter for every node's presence."""
        return f"{self.base}/status/+"

    def broadcast(self, kind: MessageKind) -> str:
        """Topic of a broadcast kind (records or blocks)."""
        if kind not in BROADCAST_KINDS:
            raise ValueError(f"{kind} messages are not broadcast")
        return f"{self.base}/{_SEGMENT_OF_KIND[kind]}"

    def subscriptions(self, own_node_id: str) -> list[str]:
        """Every filter a node subscribes to: broadcasts, its own sync inbox, all statuses."""
        return [self.records, self.blocks, self.sync(own_node_id), self.all_statuses]

    def parse(self, topic: str) -> TopicAddress | None:
        """The kind (and node) a topic of this community stands for, or None if it is not one."""
        prefix = self.base + "/"
        if not topic.startswith(prefix):
            return None
        levels = topic[len(prefix) :].split("/")
        kind = _KIND_OF_SEGMENT.get(levels[0])
        if kind is None:
            return None
        if kind in BROADCAST_KINDS:
            return TopicAddress(kind, None) if len(levels) == 1 else None
        if len(levels) == 2 and is_valid_id(levels[1]):
            return TopicAddress(kind, levels[1])
        return None


@dataclass(frozen=True)
class TopicRules:
    """What one home may do on the community's broker, as MQTT topic filters.

    A home publishes records and blocks (their signatures say whose they are), sync
    messages to any node, and presence only under its own node id (its will included);
    it subscribes to the broadcasts, every node's presence and its own sync inbox only.
    The broker logs in each home under its node id, so a Mosquitto ACL is these filters
    with ``%u`` for the node id, and NATS's permissions are their subjects.
    """

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


def rules_for(topics: CommunityTopics, node_id: str | None) -> TopicRules:
    """The publish and subscribe filters of ``node_id`` on ``topics``' community. A home
    whose node id the broker does not know yet (a joining one, before its approval names
    it) says no presence, and reads every sync inbox, its own among them."""
    every_inbox = f"{topics.base}/sync/+"
    if node_id is None:
        return TopicRules(
            publish=(topics.records, topics.blocks, every_inbox),
            subscribe=(topics.records, topics.blocks, every_inbox, topics.all_statuses),
        )
    return TopicRules(
        publish=(topics.records, topics.blocks, every_inbox, topics.status(node_id)),
        subscribe=tuple(topics.subscriptions(node_id)),
    )


def _checked(node_id: str) -> str:
    if not is_valid_id(node_id):
        raise ValueError(f"node id {node_id!r} cannot be an MQTT topic level")
    return node_id

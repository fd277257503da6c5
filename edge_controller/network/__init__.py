"""The transport between homes: the community's MQTT topics, a durable outbox, inbound defence.

The ledger defines the messages; this package only carries JSON objects and asks the app
(through callbacks) whether a message is valid. It never imports the ledger.

Wiring, in the app::

    link = CommunityLink(node_id=..., community_id=..., broker=BrokerSettings(host=...),
                         outbox_path=data_dir / "outbox.sqlite3", validator=check_signature)
    link.on_message(MessageKind.RECORD, ledger_node.receive_record)
    link.on_message(MessageKind.BLOCK, ledger_node.receive_block)
    link.on_message(MessageKind.SYNC, ledger_node.answer_sync)
    link.on_peer_change(api.push_peer)
    await link.start()
    await link.publish(MessageKind.RECORD, signed_record)   # durable once it returns
    await link.send_to(peer_id, {"type": "get_blocks", "from_height": 12})  # signed, not stored
    link.announce({"type": "head", ...})                    # signed, not stored
    link.stats()                                            # counters for the API
    await link.stop()
"""

from edge_controller.network.defence import RefusalLog, Rejection
from edge_controller.network.envelope import (
    EnvelopeAuth,
    JsonObject,
    NodeStatus,
    canonical_json,
    message_id,
    signed_bytes,
)
from edge_controller.network.link import (
    CommunityLink,
    InboundMessage,
    LinkStats,
    MessageHandler,
    SenderBinder,
    Signer,
    Validator,
)
from edge_controller.network.settings import BrokerSettings, LinkLimits
from edge_controller.network.topics import CommunityTopics, MessageKind

__all__ = [
    "BrokerSettings",
    "CommunityLink",
    "CommunityTopics",
    "EnvelopeAuth",
    "InboundMessage",
    "JsonObject",
    "LinkLimits",
    "LinkStats",
    "MessageHandler",
    "MessageKind",
    "NodeStatus",
    "RefusalLog",
    "Rejection",
    "SenderBinder",
    "Signer",
    "Validator",
    "canonical_json",
    "message_id",
    "signed_bytes",
]

"""The community's topic rules as NATS permissions, for a NATS cluster's MQTT listener.

NATS maps an MQTT topic to a subject level by level (``/`` becomes ``.``, ``+`` becomes
``*``, ``#`` becomes ``>``) and checks a user's permissions on that subject. One user per
home, named by its node id, gets exactly the rules of `topics.rules_for`, so a home can
publish presence only as itself; ``deploy/nats/`` includes the file this writes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from edge_controller.network.topics import CommunityTopics, rules_for

# A QoS 1 subscription of a persistent session is a JetStream consumer whose messages NATS
# delivers to an internal subject of this prefix; the user must be allowed to receive it.
# MQTT clients cannot subscribe to it themselves: NATS refuses topics under ``$MQTT``.
MQTT_DELIVERY_SUBJECTS = "$MQTT.sub.>"


def subject_of(topic_filter: str) -> str:
    """The NATS subject (or subject filter) of an MQTT topic filter of the community."""
    levels = topic_filter.split("/")
    if any(level == "" for level in levels):
        raise ValueError(f"{topic_filter!r}: empty topic levels have no NATS subject")
    return ".".join({"+": "*", "#": ">"}.get(level, level) for level in levels)


def home_permissions(community_id: str, node_id: str) -> dict[str, dict[str, list[str]]]:
    """The ``permissions`` block of one home's NATS user."""
    rules = rules_for(CommunityTopics(community_id), node_id)
    return {
        "publish": {"allow": [subject_of(f) for f in rules.publish]},
        "subscribe": {"allow": [*(subject_of(f) for f in rules.subscribe), MQTT_DELIVERY_SUBJECTS]},
    }


def users_config(community_id: str, logins: Mapping[str, str]) -> str:
    """An ``authorization`` block with one user per home: node id to password (plain, or a
    bcrypt hash starting ``$2``), each allowed only its own rules."""
    if not logins:
        raise ValueError("no homes: a cluster nobody may use")
    users = [
        {
            "user": node_id,
            "password": password,
            "permissions": home_permissions(community_id, node_id),
        }
        for node_id, password in sorted(logins.items())
    ]
    # JSON is valid NATS configuration syntax, and quotes every password safely.
    lines = ",\n    ".join(json.dumps(user, sort_keys=True) for user in users)
    return (
        "# One user per home, written by edge_controller.network.nats.users_config.\n"
        f"authorization {{\n  users: [\n    {lines}\n  ]\n}}\n"
    )

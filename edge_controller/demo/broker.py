"""The demo's embedded MQTT broker: amqtt, with retained messages sent only to their
subscribers.

amqtt 0.12 sends a client that connects the retained messages of every filter any client
of the broker holds, not only its own: each home's link then got the join topics and the
registrar's inbox got the homes' presence, each refused with a warning. A real broker
(Mosquitto, NATS) sends a retained message only to a subscription that matches it.
"""

from __future__ import annotations

from typing import Any

from amqtt.broker import Broker


def demo_broker(port: int) -> Broker:
    """A broker for anonymous clients on 127.0.0.1:`port`, nothing else loaded."""
    return _SubscribersOnlyBroker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            # Only what the demo needs: anonymous clients on loopback. amqtt's defaults
            # also load its $SYS statistics plugin, which nobody here reads.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
    )


class _SubscribersOnlyBroker(Broker):  # type: ignore[misc]  # amqtt ships no type information
    async def _publish_retained_messages_for_subscription(
        self, subscription: tuple[str, int], session: Any
    ) -> None:
        # Called for a new subscription and, on connect, for every filter of the broker:
        # only a filter this client holds gets its retained messages.
        holders = self._subscriptions.get(subscription[0], ())
        if any(held.client_id == session.client_id for held, _qos in holders):
            await super()._publish_retained_messages_for_subscription(subscription, session)

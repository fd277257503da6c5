"""Signing USB charging's records: the home's `issue`, with its refusal said in USB
charging's words. A refused record raises `Refusal` where it is signed; the caller decides
whether that ends the action or is only noted."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from edge_controller.ledger import KeyPair, Record
from edge_controller.refusal import Refusal, Why

log = logging.getLogger(__name__)

Issue = Callable[..., Awaitable[Record]]


def charging_refusal(exc: Exception) -> Refusal:
    """Why a record was refused, as USB charging tells it: a port the ledger does not know
    is one to have registered, and every refusal of the state of things is a conflict."""
    code = str(getattr(exc, "code", "error"))
    why = exc.why if isinstance(exc, Refusal) else Why.CONFLICT
    message = str(getattr(exc, "message", exc))
    if code == "unknown_resource":
        code, message = "port_not_registered", f"{message}: ask the registrar to register it"
        why = Why.CONFLICT
    return Refusal(code, message, Why.NOT_FOUND if why is Why.NOT_FOUND else Why.CONFLICT)


class Signer:
    """Signs and submits USB charging's records through the home's `issue`."""

    def __init__(self, issue: Issue) -> None:
        self._issue = issue

    async def sign(self, kind: str, key: KeyPair | None = None, **fields: Any) -> Record:
        """Sign a record with the home's key (or `key`) and submit it; raises Refusal."""
        try:
            return await self._issue(kind, key=key, **fields)
        except Exception as exc:  # anything that kept the record out is a refusal here
            refusal = charging_refusal(exc)
            log.warning("%s for USB charging refused: %s", kind, refusal.message)
            raise refusal from exc

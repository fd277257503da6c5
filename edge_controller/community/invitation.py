"""Invitations (signed by the registrar) and membership requests (signed by the joining
home): their shapes, signatures and refusals.

An invitation is `{"invitation": {...}, "registrar": <public key>, "sig": <hex>}`; the
signature covers `INVITATION_DOMAIN` and the invitation's canonical JSON. It travels as a
file, as a short text (`EP2P1:` and the zlib-compressed canonical JSON in URL-safe
base64) and as a QR code of that text. A membership request is `{"request": {...},
"signer": <the home's node key>, "sig": <hex>}` over `REQUEST_DOMAIN`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import zlib
from dataclasses import dataclass
from typing import Any

from edge_controller.community.broker import PASSWORD_HASH
from edge_controller.community.errors import CommunityError, Problem
from edge_controller.ledger import Genesis, KeyPair, Rejected, Verifier, account_id
from edge_controller.ledger.canonical import canonical_bytes
from edge_controller.ledger.records import (
    HEX64,
    MAX_MEMBER_NAME,
    RESOURCE_ID,
    RESOURCE_KINDS,
    integer,
    list_of,
    obj,
    one_of,
    text,
)

INVITATION_DOMAIN = b"energy-p2p invitation v1\0"
REQUEST_DOMAIN = b"energy-p2p membership request v1\0"
TEXT_PREFIX = "EP2P1:"
# Bounds on what a stranger can make a node read: an invitation carries a genesis and a CA
# certificate (a few KiB); a request carries at most MAX_RESOURCES resources.
MAX_INVITATION_BYTES = 16 * 1024
MAX_REQUEST_BYTES = 8 * 1024
MAX_RESOURCES = 16
LOGIN = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")
INVITATION_ID = re.compile(r"[0-9a-f]{16}\Z")

_ID = text(INVITATION_ID, 16)
_INVITATION = obj(
    {
        "v": integer(1, 1),
        "id": _ID,
        "community": text(re.compile(r"[0-9a-f]{32}\Z"), 32),
        "home": text(None, MAX_MEMBER_NAME),
        "expires": integer(0, 2**53),
        "genesis": lambda path, value: value,  # checked by Genesis.from_json
        "broker": obj({"host": text(None, 253), "port": integer(1, 65535)}),
        "ca": text(None, 4096),
        "login": obj({"username": text(LOGIN, 32), "password": text(None, 64)}),
    }
)
_RESOURCE = obj(
    {
        "resource": RESOURCE_ID,
        "kind": one_of(RESOURCE_KINDS),
        "power_w": integer(0, 10**9),
        "capacity_wh": integer(0, 10**12),
    },
    {"available_wh": integer(0, 10**12)},
)
_REQUEST = obj(
    {
        "v": integer(1, 1),
        "invitation": _ID,
        "community": text(re.compile(r"[0-9a-f]{32}\Z"), 32),
        "login": text(LOGIN, 32),
        "name": text(None, MAX_MEMBER_NAME),
        "meter": HEX64,
        "resources": lambda path, value: (
            [] if value == [] else list_of(_RESOURCE, MAX_RESOURCES)(path, value)
        ),
        "time": integer(0, 2**53),
    },
    # The home's own broker password as the broker keeps it (`password_hash`): approving
    # puts it in force in place of the invitation's.
    {"broker_password": text(PASSWORD_HASH, 112)},
)
_VERIFIER = Verifier(cache_size=0)


@dataclass(frozen=True)
class Invitation:
    """A checked invitation: who it is for, until when, and what the home needs to join."""

    id: str
    home: str
    expires: int
    genesis: Genesis
    broker_host: str
    broker_port: int
    ca_pem: str
    username: str
    password: str
    registrar: str
    document: dict[str, Any]

    def text(self) -> str:
        """The short form to paste: the prefix and the compressed document."""
        packed = zlib.compress(canonical_bytes(self.document), 9)
        return TEXT_PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def new_invitation_id() -> str:
    return secrets.token_hex(8)


def sign_invitation(registrar: KeyPair, body: dict[str, Any]) -> dict[str, Any]:
    """The signed document of an invitation body."""
    sig = registrar.sign(INVITATION_DOMAIN + canonical_bytes(body))
    return {"invitation": body, "registrar": registrar.public_hex, "sig": sig.hex()}


def read_invitation_text(value: str) -> dict[str, Any]:
    """The document in an invitation given as a file's JSON or as its short text."""
    value = value.strip()
    if len(value) > 4 * MAX_INVITATION_BYTES:
        raise CommunityError(Problem.MALFORMED_INVITATION, "the invitation is far too long")
    if value.startswith(TEXT_PREFIX):
        try:
            packed = base64.urlsafe_b64decode(value[len(TEXT_PREFIX) :] + "==")
            inflater = zlib.decompressobj()
            raw = inflater.decompress(packed, MAX_INVITATION_BYTES + 1)
        except (binascii.Error, ValueError, zlib.error):
            raise CommunityError(
                Problem.MALFORMED_INVITATION, "the invitation text is damaged (copy it whole)"
            ) from None
        if len(raw) > MAX_INVITATION_BYTES or inflater.unconsumed_tail:
            raise CommunityError(Problem.MALFORMED_INVITATION, "the invitation is too large")
        value = raw.decode("utf-8", "replace")
    try:
        document = json.loads(value)
    except ValueError:
        raise CommunityError(
            Problem.MALFORMED_INVITATION, "this is not an invitation (neither its file nor text)"
        ) from None
    if type(document) is not dict:
        raise CommunityError(Problem.MALFORMED_INVITATION, "this is not an invitation")
    return document


def check_invitation(document: Any, now: int) -> Invitation:
    """An invitation whose shape, genesis, registrar signature and expiry hold, or a
    `CommunityError` saying which does not."""
    if type(document) is not dict or set(document) != {"invitation", "registrar", "sig"}:
        raise CommunityError(
            Problem.MALFORMED_INVITATION, "an invitation has invitation, registrar and sig"
        )
    body = document["invitation"]
    try:
        _INVITATION("invitation", body)
        HEX64("registrar", document["registrar"])
        text(re.compile(r"[0-9a-f]{128}\Z"), 128)("sig", document["sig"])
        genesis = Genesis.from_json(body["genesis"])
    except Rejected as exc:
        raise CommunityError(Problem.MALFORMED_INVITATION, exc.message) from None
    registrar = document["registrar"]
    if registrar not in genesis.registrars or genesis.community_id != body["community"]:
        raise CommunityError(
            Problem.FORGED_INVITATION,
            "the invitation is not signed by a registrar of the community it names",
        )
    message = INVITATION_DOMAIN + canonical_bytes(body)
    if not _VERIFIER.verify(registrar, bytes.fromhex(document["sig"]), message):
        raise CommunityError(
            Problem.FORGED_INVITATION, "the registrar's signature does not hold: it was altered"
        )
    if body["expires"] <= now:
        raise CommunityError(
            Problem.EXPIRED_INVITATION,
            "the invitation has expired; ask the registrar for a new one",
        )
    return Invitation(
        id=body["id"],
        home=body["home"],
        expires=body["expires"],
        genesis=genesis,
        broker_host=body["broker"]["host"],
        broker_port=body["broker"]["port"],
        ca_pem=body["ca"],
        username=body["login"]["username"],
        password=body["login"]["password"],
        registrar=registrar,
        document=document,
    )


@dataclass(frozen=True)
class MembershipRequest:
    """A checked membership request, signed by the joining home's node key."""

    invitation: str
    login: str
    name: str
    node_key: str
    meter: str
    resources: tuple[dict[str, Any], ...]
    time: int
    document: dict[str, Any]
    # The hash of the home's own broker password (None: it keeps the invitation's).
    broker_password: str | None = None

    @property
    def account(self) -> str:
        return account_id(self.node_key)

    @property
    def id(self) -> str:
        """The request's id: its invitation's (an invitation is good for one request)."""
        return self.invitation

    def view(self) -> dict[str, Any]:
        """What the API shows of a pending request."""
        return {
            "id": self.id,
            "login": self.login,
            "name": self.name,
            "account": self.account,
            "meter": self.meter,
            "resources": [dict(r) for r in self.resources],
            "time": self.time,
        }


def sign_request(node: KeyPair, body: dict[str, Any]) -> dict[str, Any]:
    """The signed document of a membership request body."""
    sig = node.sign(REQUEST_DOMAIN + canonical_bytes(body))
    return {"request": body, "signer": node.public_hex, "sig": sig.hex()}


def check_request(document: Any, community_id: str) -> MembershipRequest:
    """A membership request whose shape and signature hold for `community_id`."""
    if type(document) is not dict or set(document) != {"request", "signer", "sig"}:
        raise CommunityError(Problem.MALFORMED_REQUEST, "a request has request, signer and sig")
    body = document["request"]
    try:
        _REQUEST("request", body)
        HEX64("signer", document["signer"])
        text(re.compile(r"[0-9a-f]{128}\Z"), 128)("sig", document["sig"])
    except Rejected as exc:
        raise CommunityError(Problem.MALFORMED_REQUEST, exc.message) from None
    if body["community"] != community_id:
        raise CommunityError(Problem.MALFORMED_REQUEST, "the request is for another community")
    ids = [r["resource"] for r in body["resources"]]
    if len(set(ids)) != len(ids):
        raise CommunityError(Problem.MALFORMED_REQUEST, "a resource is named twice")
    message = REQUEST_DOMAIN + canonical_bytes(body)
    if not _VERIFIER.verify(document["signer"], bytes.fromhex(document["sig"]), message):
        raise CommunityError(Problem.FORGED_REQUEST, "the home's signature does not hold")
    return MembershipRequest(
        invitation=body["invitation"],
        login=body["login"],
        name=body["name"],
        node_key=document["signer"],
        meter=body["meter"],
        resources=tuple(body["resources"]),
        time=body["time"],
        document=document,
        broker_password=body.get("broker_password"),
    )

"""The community's steps inside a running edge controller.

Every home: while its membership request (`membership-request.json` in its data folder,
written by `energy-p2p-edge community join`) is not answered by a `member` record naming
its account, it publishes the request, retained, on `energy-p2p/<community>/join/<login>`,
the one topic of that kind its broker login may write.

A registrar's home (`registrar: directory:` in edge.yaml) reads those topics: each request
is checked (shape, the home's signature, an invitation it issued for that login, unused and
unexpired) and kept in a bounded inbox in its book until the registrar approves it (the
member record, each resource's registration and an optional opening top-up, signed with
the registrar's key) or denies it. Why the broker and not the API: a joining home can reach
the community broker (its invitation carries the login) but not the registrar's home, which
sits behind someone else's router; a retained message waits on the broker while the
registrar's home is offline, and the ACL keeps each login to its own request topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import ssl
from collections import deque
from pathlib import Path
from typing import Any

import aiomqtt

from edge_controller.aio import cancel_and_wait
from edge_controller.app.node import LedgerNode
from edge_controller.community.book import MAX_PENDING, Registry
from edge_controller.community.errors import CommunityError, Problem
from edge_controller.community.invitation import MAX_REQUEST_BYTES, MembershipRequest, check_request
from edge_controller.community.operations import REQUEST_FILE, invite
from edge_controller.ledger import MAX_SEALERS, THIRD_RULES, KeyPair, Record, account_id
from edge_controller.network import BrokerSettings
from edge_controller.network.link import auth_refused
from edge_controller.refusal import Refusal, Why

log = logging.getLogger(__name__)

RETRY_S = (1.0, 30.0)
# How often a home publishes its membership request again while it waits for an answer.
REPUBLISH_S = 5.0
HEX_KEY = re.compile(r"[0-9a-f]{64}")
# What the API shows of refused requests: the newest few.
MAX_REFUSED = 32

_WHY = {
    Problem.UNKNOWN_REQUEST: Why.NOT_FOUND,
    Problem.UNKNOWN_INVITATION: Why.NOT_FOUND,
    Problem.UNKNOWN_MEMBER: Why.NOT_FOUND,
    Problem.NOT_REGISTRAR: Why.NOT_FOUND,
    Problem.BAD_INPUT: Why.INVALID,
    Problem.MALFORMED_REQUEST: Why.INVALID,
    Problem.MALFORMED_INVITATION: Why.INVALID,
}


def as_refusal(error: CommunityError) -> Refusal:
    """A community step's refusal as the app's (the API maps it to its HTTP status)."""
    return Refusal(error.code.value, error.message, _WHY.get(error.code, Why.CONFLICT))


class CommunityService:
    """Membership for one running home: its own request, and a registrar's inbox."""

    def __init__(
        self,
        *,
        node: LedgerNode,
        data_dir: Path,
        broker: BrokerSettings,
        registrar_dir: Path | None = None,
        broker_dir: Path | None = None,
    ) -> None:
        """`registrar_dir`: the registrar's folder when this home keeps it; `broker_dir`:
        the broker's files it keeps up to date (default: `broker` beside that folder)."""
        self.node = node
        self.ledger = node.ledger
        self.community = node.genesis.community_id
        self.broker = broker
        self.request_file = data_dir / REQUEST_FILE
        self.registry = Registry(registrar_dir, broker_dir) if registrar_dir is not None else None
        self.registrar: KeyPair | None = None
        if self.registry is not None:
            self.registrar = KeyPair.load(self.registry.key_file)
            if self.registrar.public_hex not in node.genesis.registrars:
                raise CommunityError(
                    Problem.NOT_REGISTRAR,
                    f"{self.registry.key_file} is not a registrar of {node.genesis.name}",
                )
        self.refused: deque[dict[str, Any]] = deque(maxlen=MAX_REFUSED)
        self._logged: set[tuple[str, str]] = set()
        self._to_clear: set[str] = set()
        self._wake = asyncio.Event()
        self._answered = False
        self._book_warned = False
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Start talking to the broker when there is anything to say or to hear."""
        if self.registry is not None or self.own_request() is not None:
            self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None

    def _topic(self, login: str) -> str:
        return f"energy-p2p/{self.community}/join/{login}"

    async def _run(self) -> None:
        attempt, which = 0, 0  # which of the broker settings' passwords to log in with
        while True:
            try:
                async with self._client(which) as client:
                    attempt = 0
                    await self._serve(client)
                    return  # nothing more to say or to hear
            except aiomqtt.MqttError as exc:
                if auth_refused(exc) and which + 1 < len(self.broker.passwords):
                    which += 1  # the invitation's, until the approval puts ours in force
                    continue
                which = 0
                delay = min(RETRY_S[1], RETRY_S[0] * 2**attempt)
                attempt += 1
                log.info(
                    "community requests: broker not reachable (%s); again in %.0f s", exc, delay
                )
                await asyncio.sleep(delay)

    def _client(self, which: int) -> aiomqtt.Client:
        b = self.broker
        tls = None
        if b.tls_ca_file is not None:
            tls = aiomqtt.TLSParameters(ca_certs=str(b.tls_ca_file), cert_reqs=ssl.CERT_REQUIRED)
        return aiomqtt.Client(
            b.host,
            b.port,
            username=b.username,
            password=b.passwords[which],
            identifier=f"energy-p2p-{self.node.account}-membership",
            tls_params=tls,
            timeout=b.connect_timeout_s,
            max_queued_incoming_messages=MAX_PENDING * 2,
        )

    async def _serve(self, client: aiomqtt.Client) -> None:
        if self.registry is not None:
            await client.subscribe(self._topic("+"), qos=1)
        reader = asyncio.ensure_future(self._read(client))
        try:
            while True:
                request = self.own_request()
                if request is not None and not self.is_member(request.account):
                    await client.publish(
                        self._topic(request.login),
                        json.dumps(request.document).encode(),
                        qos=1,
                        retain=True,
                    )
                elif request is not None and not self._answered:
                    # Admitted: no request of ours stays retained on the broker.
                    await client.publish(self._topic(request.login), b"", qos=1, retain=True)
                    self._answered = True
                if self.registry is None and (request is None or self._answered):
                    return
                for login in sorted(self._to_clear):
                    await client.publish(self._topic(login), b"", qos=1, retain=True)
                    self._to_clear.discard(login)
                if self.registry is not None:
                    self.close_expired()
                self._wake.clear()
                # A request not yet answered is published again soon: a broker that failed
                # while taking it (or restarted without its retained messages) gets it again.
                waiting = request is not None and not self.is_member(request.account)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), REPUBLISH_S if waiting else RETRY_S[1]
                    )
                if reader.done():
                    reader.result()
        finally:
            await cancel_and_wait(reader)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            login = str(message.topic).rsplit("/", 1)[-1]
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if not payload:
                continue  # a request cleared once decided
            try:
                self.receive(login, payload)
            except CommunityError as exc:
                self._refuse(login, exc)

    # --- a joining home ------------------------------------------------------------------

    def own_request(self) -> MembershipRequest | None:
        """This home's membership request, as `community join` wrote it (None: none)."""
        try:
            document = json.loads(self.request_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            return check_request(document, self.community)
        except CommunityError as exc:
            log.warning("%s: %s", self.request_file, exc.message)
            return None

    @property
    def request_cleared(self) -> bool:
        """Whether this home, a member now, took its membership request off the broker."""
        return self._answered

    def is_member(self, account: str) -> bool:
        member = self.ledger.state.members.get(account)
        return member is not None

    def membership(self) -> dict[str, Any]:
        """`GET community/membership`: whether this home is a member, and its request."""
        member = self.ledger.state.members.get(self.node.account)
        request = self.own_request()
        return {
            "account": self.node.account,
            "member": member is not None and member.status == "active",
            "name": member.name if member else None,
            "status": member.status if member else ("requested" if request else None),
            "request": request.view() if request else None,
            "registrar": self.registry is not None,
        }

    # --- the registrar's inbox -----------------------------------------------------------

    def _registry(self) -> Registry:
        if self.registry is None:
            raise CommunityError(
                Problem.NOT_REGISTRAR, "this home does not keep the community's registrar key"
            )
        return self.registry

    def _key(self) -> KeyPair:
        self._registry()
        assert self.registrar is not None
        return self.registrar

    def receive(self, login: str, payload: bytes) -> None:
        """Check a membership request that came in on `login`'s topic and keep it in the
        inbox; raise `CommunityError` with the reason it is refused."""
        if len(payload) > MAX_REQUEST_BYTES:
            raise CommunityError(Problem.MALFORMED_REQUEST, "the request is too large")
        try:
            document = json.loads(payload)
        except ValueError:
            raise CommunityError(Problem.MALFORMED_REQUEST, "the request is not JSON") from None
        request = check_request(document, self.community)
        if request.login != login:
            raise CommunityError(Problem.FORGED_REQUEST, "the request names another login")
        now = self.node.clock.now_ms()
        with self._registry().locked() as book:
            invitation = book.invitations.get(request.invitation)
            if invitation is None or invitation["login"] != login:
                raise CommunityError(
                    Problem.UNKNOWN_INVITATION, "no invitation of this registrar for that home"
                )
            if invitation["state"] == "used" and invitation.get("key") == request.node_key:
                # The approved home asks again until its member record reaches its ledger.
                log.debug("membership request from %s (%s) already approved", request.name, login)
                return
            if invitation["state"] != "issued":
                raise CommunityError(
                    Problem.USED_INVITATION, f"the invitation was already {invitation['state']}"
                )
            if book.expired(request.invitation, now) and request.id not in book.pending:
                raise CommunityError(Problem.EXPIRED_INVITATION, "the invitation has expired")
            if request.id in book.pending:
                return
            if len(book.pending) >= MAX_PENDING:
                raise CommunityError(
                    Problem.INBOX_FULL, f"{MAX_PENDING} requests already wait for a decision"
                )
            book.pending[request.id] = {"request": request.document, "received": now}
        log.info("membership request from %s (%s) waits for approval", request.name, login)

    def close_expired(self) -> None:
        """Close the broker logins of invitations that expired unused (checked at least
        every 30 s while the registrar's home runs; the book is written only when one
        closes)."""
        registry = self._registry()
        now = self.node.clock.now_ms()
        try:
            if not registry.read().closable(now):
                return
            with registry.locked() as book:
                if book.close_logins(now):
                    registry.write_broker_files(book)
                    log.info("closed the broker logins of invitations that expired unused")
        except (CommunityError, OSError) as exc:
            if not self._book_warned:  # once: a broken book shows at every approval too
                log.warning("cannot close expired invitations' logins: %s", exc)
            self._book_warned = True

    def _refuse(self, login: str, exc: CommunityError) -> None:
        self.refused.append(
            {
                "login": login,
                "code": exc.code.value,
                "message": exc.message,
                "time": self.node.clock.now_ms(),
            }
        )
        # Logged once per login and reason: a login publishing again costs no log lines.
        if (login, exc.code.value) not in self._logged and len(self._logged) < 1_000:
            self._logged.add((login, exc.code.value))
            log.warning("membership request on %s refused: %s", login, exc)

    def requests(self) -> dict[str, Any]:
        """`GET community/requests`: the requests waiting, and the newest refused."""
        book = self._registry().read()
        pending = []
        for entry in book.pending.values():
            request = check_request(entry["request"], self.community)
            pending.append({**request.view(), "received": entry["received"]})
        return {"requests": pending, "refused": list(self.refused)}

    async def approve(self, request_id: str, topup: int = 0, sealer: bool = True) -> dict[str, Any]:
        """Register what the request asks, with the member's name, an optional opening
        top-up and (`sealer`, the default: a membership request comes from an edge
        controller, which can seal) the home's node key added to the sealers; nothing is
        signed when any part would be refused."""
        key, registry = self._key(), self._registry()
        if topup < 0:
            raise CommunityError(Problem.BAD_INPUT, "a top-up is a positive amount")
        async with self._lock:
            book = registry.read()
            entry = book.pending.get(request_id)
            if entry is None:
                raise CommunityError(Problem.UNKNOWN_REQUEST, f"no request {request_id} waits")
            request = check_request(entry["request"], self.community)
            bodies = self._registration_bodies(request)
            if topup:
                bodies.append({"kind": "topup", "to": request.account, "amount": topup})
            if sealer and self._can_add_sealer(request.node_key):
                bodies.append({"kind": "sealer", "key": request.node_key, "action": "add"})
            # All or none: a refusal half way would leave a named member whose resources
            # were never registered, whatever the registrar decides next.
            records = [r.id for r in await self.node.issue_all(bodies, key)]
            with registry.locked() as book:
                book.pending.pop(request_id, None)
                book.invitations[request_id].update(
                    state="used", account=request.account, key=request.node_key
                )
                book.logins[request.login]["node_id"] = request.account
                if request.broker_password is not None:
                    # The home's own password from now on: the invitation's opens nothing.
                    book.passwords[request.login] = f"{request.login}:{request.broker_password}"
                registry.write_broker_files(book)
            self._to_clear.add(request.login)
            self._wake.set()
        return {"approved": request_id, "account": request.account, "records": records}

    def _registration_bodies(self, request: MembershipRequest) -> list[dict[str, Any]]:
        state = self.ledger.state
        pooled = {r.body["resource"] for r in self.ledger.pool.values() if r.kind == "registration"}
        bodies: list[dict[str, Any]] = [
            {"kind": "member", "account": request.account, "name": request.name}
        ]
        for r in request.resources:
            existing = state.resources.get(r["resource"])
            owner = state.members.get(existing.owner) if existing else None
            moving = owner is not None and owner.status != "active"
            if (existing is not None and not moving) or r["resource"] in pooled:
                raise CommunityError(
                    Problem.RESOURCE_EXISTS,
                    f"resource {r['resource']} is already registered; the home must rename it",
                )
            bodies.append(
                {
                    "kind": "registration",
                    "resource": r["resource"],
                    "owner": request.account,
                    "resource_kind": r["kind"],
                    "power_w": r["power_w"],
                    "capacity_wh": r["capacity_wh"],
                    "meter": request.meter,
                    **({"available_wh": r["available_wh"]} if "available_wh" in r else {}),
                }
            )
        return bodies

    async def _issue(self, key: KeyPair, body: dict[str, Any]) -> str:
        fields = {k: v for k, v in body.items() if k != "kind"}
        record: Record = await self.node.issue_fields(body["kind"], fields, key)
        return record.id

    def _can_add_sealer(self, node_key: str) -> bool:
        """Whether approving may add `node_key` to the sealers: a community of proof of
        authority on rules 3, where it is not a sealer yet (planned or pooled)."""
        genesis = self.node.genesis
        if genesis.consensus.mode != "poa" or genesis.consensus.rules < THIRD_RULES:
            return False
        planned = self.ledger.planned_sealers()
        if node_key in planned or len(planned) >= MAX_SEALERS:
            return False
        return not any(
            r.kind == "sealer" and r.body["key"] == node_key for r in self.ledger.pool.values()
        )

    def _sealer_key(self, who: str) -> str:
        """The public key an account or a key names: a key as given; an account by the
        sealers' keys and the keys of the homes this registrar approved."""
        if HEX_KEY.fullmatch(who):
            return who
        known = [*self.ledger.planned_sealers(), *self.node.genesis.consensus.sealers]
        known += [i["key"] for i in self._registry().read().invitations.values() if i.get("key")]
        for key in known:
            if account_id(key) == who:
                return key
        raise CommunityError(
            Problem.UNKNOWN_MEMBER,
            f"no known key of {who}: give the home's node public key (64 hex characters)",
        )

    async def change_sealer(self, who: str, action: str) -> dict[str, Any]:
        """Add the home `who` (an account or a node public key) to the sealers, or remove
        it: a `sealer` record, in force two blocks after its block is final."""
        key = self._key()
        genesis = self.node.genesis
        if genesis.consensus.mode != "poa" or genesis.consensus.rules < THIRD_RULES:
            raise CommunityError(
                Problem.BAD_INPUT,
                "this community's genesis fixes its sealers (proof of authority on rules 3"
                " changes them)",
            )
        sealer_key = self._sealer_key(who)
        body = {"kind": "sealer", "key": sealer_key, "action": action}
        return {
            "sealer": await self._issue(key, body),
            "key": sealer_key,
            "account": account_id(sealer_key),
            "action": action,
        }

    async def deny(self, request_id: str, reason: str = "") -> dict[str, Any]:
        """Refuse a waiting request: nothing is registered, its invitation is spent and its
        login closed on the broker (the invitation opens nothing any more)."""
        registry = self._registry()
        async with self._lock:
            with registry.locked() as book:
                entry = book.pending.pop(request_id, None)
                if entry is None:
                    raise CommunityError(Problem.UNKNOWN_REQUEST, f"no request {request_id} waits")
                invitation = book.invitations[request_id]
                invitation.update(state="denied", reason=reason[:200])
                book.close_logins(self.node.clock.now_ms())
                registry.write_broker_files(book)
            self._to_clear.add(invitation["login"])
            self._wake.set()
        return {"denied": request_id}

    def invite(self, home: str, valid_hours: int) -> dict[str, Any]:
        """Issue an invitation (as `community invite` does) and return its text and files."""
        registry = self._registry()
        now = self.node.clock.now_ms()
        return invite(registry, self._key(), home, valid_hours, now, genesis=self.node.genesis)

    async def topup(self, account: str, amount: int, memo: str = "") -> dict[str, Any]:
        """Issue `amount` milli-units to `account`."""
        fields: dict[str, Any] = {"kind": "topup", "to": account, "amount": amount}
        if memo:
            fields["memo"] = memo
        return {"topup": await self._issue(self._key(), fields)}

    async def set_standing(self, account: str, status: str) -> dict[str, Any]:
        """Record that a member `left` or that its key is `revoked` (or `active` again)."""
        member = self.ledger.state.members.get(account)
        if member is None:
            raise CommunityError(Problem.UNKNOWN_MEMBER, f"{account} is not a named member")
        body = {"kind": "member", "account": account, "name": member.name, "status": status}
        result: dict[str, Any] = {"member": await self._issue(self._key(), body)}
        sealer = next((k for k in self.ledger.planned_sealers() if account_id(k) == account), "")
        if status != "active" and sealer:
            # A home that left, or whose key was lost, seals no more; unless it is the last.
            removal = {"kind": "sealer", "key": sealer, "action": "remove"}
            try:
                result["sealer"] = await self._issue(self._key(), removal)
            except Refusal as exc:
                log.warning("%s stays a sealer: %s", member.name or account, exc.message)
                result["sealer_kept"] = exc.code
        return result

    def _new_resource(self, resource_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A registration of a resource a member adds (a new battery): its owner, kind,
        rating and capacity; metered by the owner's meter key unless another is named."""
        owner, kind = changes.get("owner"), changes.get("kind")
        if not owner or not kind:
            raise CommunityError(
                Problem.BAD_INPUT,
                f"the ledger holds no resource {resource_id}; to add one, name its owner and kind",
            )
        meter = changes.get("meter") or next(
            (
                r.meter
                for r in self.ledger.state.resources.rows.values()
                if r.owner == owner and r.meter
            ),
            "",
        )
        body: dict[str, Any] = {
            "kind": "registration",
            "resource": resource_id,
            "owner": owner,
            "resource_kind": kind,
            "power_w": changes.get("power_w", 0),
            "capacity_wh": changes.get("capacity_wh", 0),
        }
        if meter:
            body["meter"] = meter
        return body

    async def update_resource(self, resource_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """A resource's new rating or capacity (a registration again) or the energy it holds
        (a resource update), signed by the registrar; a resource the ledger does not hold
        yet is registered to the `owner` named, of `kind`."""
        resource = self.ledger.state.resources.get(resource_id)
        key = self._key()
        if resource is None:
            return {"records": [await self._issue(key, self._new_resource(resource_id, changes))]}
        records = []
        if "power_w" in changes or "capacity_wh" in changes:
            body: dict[str, Any] = {
                "kind": "registration",
                "resource": resource.id,
                "owner": resource.owner,
                "resource_kind": resource.kind,
                "power_w": changes.get("power_w", resource.power_w),
                "capacity_wh": changes.get("capacity_wh", resource.capacity_wh),
            }
            if resource.meter:
                body["meter"] = resource.meter
            if resource.location:
                body["location"] = resource.location
            if "available_wh" in changes:
                body["available_wh"] = changes["available_wh"]
            records.append(await self._issue(key, body))
        elif "available_wh" in changes:
            update = {
                "kind": "resource_update",
                "resource": resource.id,
                "available_wh": changes["available_wh"],
            }
            records.append(await self._issue(key, update))
        else:
            raise CommunityError(
                Problem.BAD_INPUT, "name power_w, capacity_wh or available_wh to change"
            )
        return {"records": records}

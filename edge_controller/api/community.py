"""The API's community endpoints: members and resources for every home; membership
requests, invitations, top-ups, resource changes and a member's standing for the
registrar's home (the others answer `404 not_registrar`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edge_controller.community import CommunityError, CommunityService, as_refusal
from edge_controller.refusal import Refusal, Why

COMMUNITY_KEY: web.AppKey[CommunityService] = web.AppKey("community", CommunityService)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BodyOf = Callable[[web.Request], Awaitable[dict[str, Any]]]


def _service(request: web.Request) -> CommunityService:
    service = request.app.get(COMMUNITY_KEY)
    if service is None:
        raise Refusal(
            "not_registrar", "this edge controller runs no community service", Why.NOT_FOUND
        )
    return service


def _integer(
    data: dict[str, Any], name: str, low: int, high: int, default: int | None = None
) -> int:
    value = data.get(name, default)
    if type(value) is not int or not low <= value <= high:
        raise Refusal(
            "invalid_field", f"{name}: expected an integer in [{low}, {high}]", Why.INVALID
        )
    return value


def _text(data: dict[str, Any], name: str, max_length: int, default: str | None = None) -> str:
    value = data.get(name, default)
    if type(value) is not str or len(value) > max_length:
        raise Refusal(
            "invalid_field",
            f"{name}: expected a text of at most {max_length} characters",
            Why.INVALID,
        )
    return value


def _guarded(handler: Callable[[web.Request], Awaitable[Any]]) -> Handler:
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            result = await handler(request)
        except CommunityError as exc:
            raise as_refusal(exc) from None
        status = 201 if request.method == "POST" else 200
        return web.json_response(result, status=status)

    return run


def add_routes(
    app: web.Application, prefix: str, home_of: Callable[[web.Request], Any], body: BodyOf
) -> None:
    """Register the community's routes under `prefix`."""

    async def members(request: web.Request) -> Any:
        return {"members": home_of(request).queries.members()}

    async def resources(request: web.Request) -> Any:
        return {"resources": home_of(request).queries.resources()}

    async def resource(request: web.Request) -> Any:
        return home_of(request).queries.resource(request.match_info["resource_id"])

    async def membership(request: web.Request) -> Any:
        return _service(request).membership()

    async def requests(request: web.Request) -> Any:
        return _service(request).requests()

    async def approve(request: web.Request) -> Any:
        data = await body(request)
        topup = _integer(data, "topup", 0, 10**15, 0)
        sealer = data.get("sealer", True)
        if type(sealer) is not bool:
            raise Refusal("invalid_field", "sealer: expected true or false", Why.INVALID)
        return await _service(request).approve(request.match_info["request_id"], topup, sealer)

    async def deny(request: web.Request) -> Any:
        data = await body(request)
        reason = _text(data, "reason", 200, "")
        return await _service(request).deny(request.match_info["request_id"], reason)

    async def invitation(request: web.Request) -> Any:
        data = await body(request)
        home = _text(data, "home", 64)
        hours = _integer(data, "valid_hours", 1, 24 * 90, 72)
        return _service(request).invite(home, hours)

    async def topup(request: web.Request) -> Any:
        data = await body(request)
        account = _text(data, "account", 42)
        amount = _integer(data, "amount", 1, 10**15)
        return await _service(request).topup(account, amount, _text(data, "memo", 200, ""))

    async def change_resource(request: web.Request) -> Any:
        data = await body(request)
        changes: dict[str, Any] = {
            name: _integer(data, name, 0, 10**12)
            for name in ("power_w", "capacity_wh", "available_wh")
            if name in data
        }
        for name, length in (("owner", 42), ("kind", 16), ("meter", 64)):
            if name in data:
                changes[name] = _text(data, name, length)
        return await _service(request).update_resource(request.match_info["resource_id"], changes)

    def standing(status: str) -> Callable[[web.Request], Awaitable[Any]]:
        async def change(request: web.Request) -> Any:
            return await _service(request).set_standing(request.match_info["account"], status)

        return change

    def sealer(action: str) -> Callable[[web.Request], Awaitable[Any]]:
        async def change(request: web.Request) -> Any:
            return await _service(request).change_sealer(request.match_info["who"], action)

        return change

    r = app.router
    r.add_get(f"{prefix}/members", _guarded(members))
    r.add_get(f"{prefix}/resources", _guarded(resources))
    r.add_get(f"{prefix}/resources/{{resource_id:.+}}", _guarded(resource))
    r.add_get(f"{prefix}/community/membership", _guarded(membership))
    r.add_get(f"{prefix}/community/requests", _guarded(requests))
    r.add_post(f"{prefix}/community/requests/{{request_id}}/approve", _guarded(approve))
    r.add_post(f"{prefix}/community/requests/{{request_id}}/deny", _guarded(deny))
    r.add_post(f"{prefix}/community/invitations", _guarded(invitation))
    r.add_post(f"{prefix}/community/topups", _guarded(topup))
    r.add_post(f"{prefix}/community/resources/{{resource_id:.+}}", _guarded(change_resource))
    r.add_post(f"{prefix}/community/members/{{account}}/leave", _guarded(standing("left")))
    r.add_post(f"{prefix}/community/members/{{account}}/revoke", _guarded(standing("revoked")))
    r.add_post(f"{prefix}/community/sealers/{{who}}/add", _guarded(sealer("add")))
    r.add_post(f"{prefix}/community/sealers/{{who}}/remove", _guarded(sealer("remove")))

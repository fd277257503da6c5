"""The owner's answers to counter-offers on the home's offers (docs/api.md).

`GET counter-offers` lists those waiting; `POST counter-offers/{id}/confirm` and
`.../decline` answer one. The routes are built around the server's own helpers, which
this module cannot import (the server registers these routes).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from edge_controller.app.home import Home

HomeOf = Callable[[web.Request], Home]
Reason = Callable[[web.Request], Awaitable[str]]


def counter_routes(prefix: str, home_of: HomeOf, reason_of: Reason) -> list[web.RouteDef]:
    """The counter-offer routes under `prefix`; `reason_of` reads a decline's reason."""

    async def get_counters(request: web.Request) -> web.Response:
        home = home_of(request)
        return web.json_response(home.counters.list(home.now))

    async def post_confirm(request: web.Request) -> web.Response:
        result = await home_of(request).counters.confirm(request.match_info["counter_id"])
        return web.json_response(result, status=201)

    async def post_decline(request: web.Request) -> web.Response:
        reason = await reason_of(request)
        counters = home_of(request).counters
        result = await counters.decline(request.match_info["counter_id"], reason)
        return web.json_response(result, status=201)

    return [
        web.get(f"{prefix}/counter-offers", get_counters),
        web.post(f"{prefix}/counter-offers/{{counter_id}}/confirm", post_confirm),
        web.post(f"{prefix}/counter-offers/{{counter_id}}/decline", post_decline),
    ]

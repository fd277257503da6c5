"""Home Assistant as a device source, over the API the integration already holds:
`GET`/`PUT homeassistant/entities` (which entities stand for each device), and
`POST homeassistant/states` (relayed states in, service calls to carry out back).

`server.py` registers these routes and hands in how it finds the home and reads a body,
so this module does not import it back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from edge_controller.app.home import Home
from edge_controller.devices.homeassistant import EntityMappingBody, RelayBody

Reader = Callable[[web.Request, type[Any]], Awaitable[Any]]


def add_routes(
    router: web.UrlDispatcher, prefix: str, home_of: Callable[[web.Request], Home], read: Reader
) -> None:
    """Register the Home Assistant device routes under `prefix`."""

    async def get_entities(request: web.Request) -> web.Response:
        return web.json_response(home_of(request).homeassistant.mapping())

    async def put_entities(request: web.Request) -> web.Response:
        chosen: EntityMappingBody = await read(request, EntityMappingBody)
        return web.json_response(home_of(request).homeassistant.set_mapping(chosen))

    async def post_states(request: web.Request) -> web.Response:
        relayed: RelayBody = await read(request, RelayBody)
        return web.json_response(home_of(request).homeassistant.relay(relayed))

    router.add_get(f"{prefix}/homeassistant/entities", get_entities)
    router.add_put(f"{prefix}/homeassistant/entities", put_entities)
    router.add_post(f"{prefix}/homeassistant/states", post_states)

"""The building, statements and the market monitoring station over HTTP (docs/api.md):

- `GET building`, `GET building/owners/{owner}`: taps, owners, balances, cut-offs, figures;
- `POST building/topup` `{"owner", "amount"}`: a prepaid owner's top-up;
- `GET statements?owner=…&month=YYYY-MM[&format=json|csv|pdf]`: a monthly statement;
- `GET monitor?period=hour|day|week&count=N`: community-wide volumes, prices, trends, pairs.

`server.py` registers them with `building_routes`; they reach the home through the key
and body reader it passes, so this module does not import the server.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from aiohttp import web

from edge_controller.app.building import Building
from edge_controller.app.home import Home
from edge_controller.app.monitor import monitor
from edge_controller.app.statements import statement, statement_csv, statement_pdf
from edge_controller.market.checks import Between, NonEmpty, ValidationError, from_dict
from edge_controller.refusal import Refusal, Why

BodyReader = Callable[[web.Request], Awaitable[dict[str, Any]]]
FORMATS = ("json", "csv", "pdf")


@dataclass(frozen=True)
class TopUpBody:
    """`POST building/topup`."""

    owner: Annotated[str, NonEmpty()]
    amount: Annotated[int, Between(1, 10**12)]


def building_or_refuse(home: Home) -> Building:
    """The home's building, or a not-found refusal when edge.yaml has no `building:`."""
    if home.building is None:
        raise Refusal(
            "building_not_configured", "this home has no building: section", Why.NOT_FOUND
        )
    return home.building


def statement_of(home: Home, owner: str, month: str) -> dict[str, Any]:
    """The statement of `owner` for `month` as JSON-ready data (the API and the CLI)."""
    return statement(home.ledger, home.genesis.currency, home.building, home.account, owner, month)


def building_routes(
    prefix: str, home_key: web.AppKey[Home], read_json: BodyReader
) -> list[web.RouteDef]:
    """The routes of this module, reading the home under `home_key`."""

    async def get_building(request: web.Request) -> web.Response:
        home = request.app[home_key]
        return web.json_response(building_or_refuse(home).view(home.now))

    async def get_owner(request: web.Request) -> web.Response:
        home = request.app[home_key]
        owner = request.match_info["owner"]
        return web.json_response(building_or_refuse(home).owner_view(owner, home.now))

    async def post_topup(request: web.Request) -> web.Response:
        home = request.app[home_key]
        try:
            topup = from_dict(TopUpBody, await read_json(request))
        except ValidationError as error:
            raise Refusal("invalid_field", str(error), Why.INVALID) from None
        building = building_or_refuse(home)
        return web.json_response(await building.top_up(topup.owner, topup.amount, home.now))

    async def get_statement(request: web.Request) -> web.StreamResponse:
        home = request.app[home_key]
        owner, month = request.query.get("owner"), request.query.get("month")
        kind = request.query.get("format", "json")
        if not owner or not month:
            raise Refusal("missing_field", "owner and month are required", Why.INVALID)
        if kind not in FORMATS:
            raise Refusal(
                "invalid_field", f"format must be one of {', '.join(FORMATS)}", Why.INVALID
            )
        data = statement_of(home, owner, month)
        if kind == "json":
            return web.json_response(data)
        name = f"statement-{owner}-{month}.{kind}"
        headers = {"Content-Disposition": f'attachment; filename="{_safe(name)}"'}
        if kind == "csv":
            return web.Response(text=statement_csv(data), content_type="text/csv", headers=headers)
        return web.Response(
            body=statement_pdf(data), content_type="application/pdf", headers=headers
        )

    async def get_monitor(request: web.Request) -> web.Response:
        home = request.app[home_key]
        try:
            count = int(request.query.get("count", "24"))
        except ValueError:
            raise Refusal("invalid_field", "count must be an integer", Why.INVALID) from None
        period = request.query.get("period", "hour")
        return web.json_response(monitor(home.ledger, home.now, period, count))

    return [
        web.get(f"{prefix}/building", get_building),
        web.get(f"{prefix}/building/owners/{{owner}}", get_owner),
        web.post(f"{prefix}/building/topup", post_topup),
        web.get(f"{prefix}/statements", get_statement),
        web.get(f"{prefix}/monitor", get_monitor),
    ]


def _safe(name: str) -> str:
    """A file name with nothing a header could be bent by."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:120]

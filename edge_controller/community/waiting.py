"""An edge controller that belongs to no community yet: its `edge.yaml` names no genesis.

It serves a small API with the usual token until it is given an invitation
(`POST /api/v1/community/join`, as Home Assistant's "Join a community" step does), joins
with it exactly as `energy-p2p-edge community join` does, and returns so the runner starts
the home. `GET /api/v1/status` answers `{"joined": false, "community": null, ...}`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from edge_controller import __version__
from edge_controller.app.identity import load_or_create_token
from edge_controller.community.errors import CommunityError, Problem
from edge_controller.community.invitation import MAX_INVITATION_BYTES, read_invitation_text
from edge_controller.community.operations import join

log = logging.getLogger(__name__)
API_VERSION = 1


def unjoined(document: Any) -> bool:
    """Whether an edge.yaml document names no community yet (no `genesis`)."""
    return isinstance(document, dict) and not document.get("genesis")


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


_STATUS = {
    Problem.BAD_INPUT: 422,
    Problem.MALFORMED_INVITATION: 422,
    Problem.EXPIRED_INVITATION: 409,
    Problem.FORGED_INVITATION: 409,
    Problem.ALREADY_EXISTS: 409,
}


async def wait_for_invitation(config: Path, document: dict[str, Any], stop: asyncio.Event) -> bool:
    """Serve the joining API until a join succeeds (True) or `stop` is set (False)."""
    base = config.parent
    data_dir = base / str(document.get("data_dir", "data"))
    section = document.get("api")
    api: dict[str, Any] = section if isinstance(section, dict) else {}
    host, port = str(api.get("host", "127.0.0.1")), int(api.get("port", 8780))
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = load_or_create_token(data_dir / str(api.get("token_file", "api-token")))
    joined = asyncio.Event()

    @web.middleware
    async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
        given = request.headers.get("Authorization", "")[7:].strip().encode("utf-8", "replace")
        if not hmac.compare_digest(given, token.encode()):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        result: web.StreamResponse = await handler(request)
        return result

    async def status(_request: web.Request) -> web.Response:
        return web.json_response(
            {
                "api_version": API_VERSION,
                "node_id": None,
                "name": document.get("name"),
                "version": __version__,
                "joined": False,
                "community": None,
                "time": time.time_ns() // 1_000_000,
            }
        )

    async def post_join(request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            data = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_json", "the body is not JSON")
        given = data.get("invitation") if isinstance(data, dict) else None
        name = data.get("name") if isinstance(data, dict) else None
        if name is not None and type(name) is not str:
            return _error(422, "invalid_field", "name: expected a text")
        try:
            if isinstance(given, str):
                invitation = read_invitation_text(given)
            elif isinstance(given, dict):
                invitation = given
            else:
                raise CommunityError(
                    Problem.MALFORMED_INVITATION, "invitation: its text or its document"
                )
            result = await asyncio.to_thread(
                join, invitation, config, now=time.time_ns() // 1_000_000, name=name
            )
        except CommunityError as exc:
            return _error(_STATUS.get(exc.code, 409), exc.code.value, exc.message)
        joined.set()
        return web.json_response({**result, "restarting": True}, status=201)

    app = web.Application(middlewares=[auth], client_max_size=4 * MAX_INVITATION_BYTES)
    app.router.add_get("/api/v1/status", status)
    app.router.add_post("/api/v1/community/join", post_join)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    print(f"waiting http://{host}:{port} for an invitation", flush=True)
    log.info("%s belongs to no community yet: waiting for an invitation", document.get("name"))
    try:
        done = asyncio.ensure_future(joined.wait())
        stopped = asyncio.ensure_future(stop.wait())
        await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        stopped.cancel()
        # The join's answer goes out before the server closes.
        await asyncio.sleep(0.2)
    finally:
        await runner.cleanup()
    return joined.is_set()


def read_document(path: Path) -> Any:
    """The edge.yaml document as written (None when it cannot be read)."""
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None

"""Support for the end-to-end test: the showcase (Mosquitto, a process per home, a real
Home Assistant) as the test starts it, the homes' APIs, and polling."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge_controller.demo.hass import RunningHass, start_hass
from edge_controller.demo.hass_client import HomeAccess
from edge_controller.demo.layouts import ProcessCommunity
from edge_controller.processes import Child, free_port, leftovers


def home_api(home: HomeAccess, method: str, path: str, body: Any = None) -> Any:
    """`method /api/v1/<path>` on a home's edge controller; the JSON answer."""
    request = urllib.request.Request(
        f"{home.url}/api/v1/{path}",
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {home.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return {"http_status": exc.code, **json.loads(exc.read() or b"{}")}


T = TypeVar("T")


async def eventually(read: Callable[[], Awaitable[T | None]], within: float, what: str) -> T:
    """The first truthy result of `read()`, polled every half second."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await read()
        if last:
            return last
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what}: not within {within:.0f} s (last: {last!r})")


@dataclass
class Showcase:
    """The community and Home Assistant, started; `stop()` ends every process."""

    community: ProcessCommunity
    hass: RunningHass
    folder: Path

    @property
    def children(self) -> list[Child]:
        return [*self.community.children, self.hass.child]

    def home(self, slug_prefix: str) -> HomeAccess:
        return next(h for h in self.community.homes if h.slug.startswith(slug_prefix))

    def stop(self) -> list[str]:
        """Stop everything; the names of children that left a process behind."""
        self.hass.child.stop()
        self.community.stop()
        return leftovers(self.children)


def start_showcase(folder: Path) -> Showcase:
    community = ProcessCommunity(folder / "community")
    try:
        community.start()
        hass = start_hass(folder / "home-assistant", community.homes, free_port())
    except BaseException:
        community.stop()
        raise
    return Showcase(community, hass, folder)

"""Zeroconf: the node announces `_energy-p2p._tcp` on the LAN so Home Assistant finds it."""

from __future__ import annotations

import contextlib
import logging
import socket

from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from edge_controller import __version__

log = logging.getLogger(__name__)

SERVICE_TYPE = "_energy-p2p._tcp.local."


def _lan_address() -> str:
    """The address other hosts reach us on (the one the default route uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


class Advertiser:
    """Registers and withdraws the node's zeroconf service record."""

    def __init__(self, node_id: str, name: str, port: int, api_version: int = 1) -> None:
        self.info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{node_id}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(_lan_address())],
            port=port,
            properties={
                "node_id": node_id,
                "name": name[:60],
                "api_version": str(api_version),
                "path": "/api/v1",
                "version": __version__,
            },
            server=f"{node_id}.local.",
        )
        self._zeroconf: AsyncZeroconf | None = None

    async def start(self) -> bool:
        """Announce the service; False (logged, not raised) where multicast is unavailable."""
        try:
            self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
            await self._zeroconf.async_register_service(self.info)
        except (OSError, RuntimeError) as exc:
            log.warning("zeroconf announcement failed (%s); add the node by hand in HA", exc)
            await self.stop()
            return False
        return True

    async def stop(self) -> None:
        if self._zeroconf is not None:
            with contextlib.suppress(OSError, RuntimeError, KeyError):
                await self._zeroconf.async_unregister_service(self.info)
            await self._zeroconf.async_close()
            self._zeroconf = None

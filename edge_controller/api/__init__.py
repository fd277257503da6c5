"""The edge controller's API: HTTP + WebSocket for Home Assistant, and LAN discovery."""

from edge_controller.api.discovery import Advertiser
from edge_controller.api.server import ApiServer, create_app

__all__ = ["Advertiser", "ApiServer", "create_app"]

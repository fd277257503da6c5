"""energy-p2p-client: an async client of the Energy P2P edge controller's API, version 1.

Reading (`get_status`, `get_offers`, ...), acting (`accept_offer`, `create_offer`, ...) and
following its WebSocket events (`stream_events`), over an aiohttp session the caller owns.
Every failure is an `EnergyP2PError`: `CannotConnect`, `InvalidAuth`, or `ApiError` with the
edge controller's machine-readable code and message.
"""

from .client import (
    API_PATH,
    API_VERSION,
    JSON,
    WS_CLOSE_UNAUTHORIZED,
    ApiError,
    CannotConnect,
    EnergyP2PClient,
    EnergyP2PError,
    EventHandler,
    InvalidAuth,
    StateHandler,
    UnsupportedApiVersion,
    check_api_version,
    reconnect_delay,
)

__version__ = "0.1.0"

__all__ = [
    "API_PATH",
    "API_VERSION",
    "JSON",
    "WS_CLOSE_UNAUTHORIZED",
    "ApiError",
    "CannotConnect",
    "EnergyP2PClient",
    "EnergyP2PError",
    "EventHandler",
    "InvalidAuth",
    "StateHandler",
    "UnsupportedApiVersion",
    "__version__",
    "check_api_version",
    "reconnect_delay",
]

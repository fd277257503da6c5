"""Constants of the Energy P2P integration."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

DOMAIN: Final = "energy_p2p"

DEFAULT_PORT: Final = 8780
# The edge controller's API version this integration speaks (docs/api.md); fields are
# only ever added within a version, so any other version is refused.
API_VERSION: Final = 1
API_PATH: Final = "/api/v1"

# Events arrive over the WebSocket as they happen; this full re-read only catches what
# a dropped event or a missed reconnect could have left stale.
RESYNC_INTERVAL: Final = timedelta(minutes=5)

# Reconnecting the event stream: 1 s, 2 s, 4 s, ... at most 60 s between attempts.
RECONNECT_MIN_DELAY: Final = 1.0
RECONNECT_MAX_DELAY: Final = 60.0

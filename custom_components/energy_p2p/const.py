"""Constants of the Energy P2P integration."""

from __future__ import annotations

from datetime import timedelta
from typing import Final

DOMAIN: Final = "energy_p2p"

DEFAULT_PORT: Final = 8780

# Events arrive over the WebSocket as they happen; this full re-read only catches what
# a dropped event or a missed reconnect could have left stale.
RESYNC_INTERVAL: Final = timedelta(minutes=5)

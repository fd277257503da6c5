"""The dashboard card, shipped with the integration: served and loaded on every page.

Users need no separate install: the card's module is served from the integration's
`frontend/` folder and added to the frontend's extra modules, so `custom:energy-p2p-card`
is in the card picker as soon as the integration is set up.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Final

from homeassistant.components.frontend import add_extra_js_url
from homeassistant.components.http.server import StaticPathConfig
from homeassistant.core import HomeAssistant
from homeassistant.util.hass_dict import HassKey

from .const import DOMAIN
from .websocket import async_register_websocket_commands

_LOGGER = logging.getLogger(__name__)

CARD_FILE: Final = Path(__file__).parent / "frontend" / "energy-p2p-card.js"
CARD_URL_PATH: Final = f"/{DOMAIN}/energy-p2p-card.js"
# The URL the frontend loads (with its cache-busting version), once registered.
DATA_CARD_URL: HassKey[str] = HassKey(f"{DOMAIN}_card_url")


async def async_register_card(hass: HomeAssistant) -> None:
    """Serve the card, load it on every frontend page, and answer its data command.

    Idempotent: registers once per Home Assistant start, however many entries there are.
    """
    if DATA_CARD_URL in hass.data:
        return
    # The content's hash as the version: a changed card is fetched anew at once, an
    # unchanged one stays cached (the static path sends long cache headers).
    content = await hass.async_add_executor_job(CARD_FILE.read_bytes)
    url = f"{CARD_URL_PATH}?v={hashlib.sha256(content).hexdigest()[:12]}"
    hass.data[DATA_CARD_URL] = url
    await hass.http.async_register_static_paths(
        [StaticPathConfig(CARD_URL_PATH, str(CARD_FILE), cache_headers=True)]
    )
    # Home Assistant always loads its frontend; minimal set-ups (tests) may not.
    if "frontend" in hass.config.components:
        add_extra_js_url(hass, url)
    else:
        _LOGGER.debug("No frontend loaded: the card is served at %s but not added", url)
    async_register_websocket_commands(hass)

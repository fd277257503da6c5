"""Fixtures for the Home Assistant tests (Python 3.14; run by `scripts/ha-test`).

pytest-homeassistant-custom-component is a pytest plugin: it provides Home Assistant's own
test fixtures (`hass`, `enable_custom_integrations`, `aioclient_mock`, ...) by itself.
"""

from __future__ import annotations

import pytest

# Imported before any `hass` fixture runs, so that `custom_components` is this checkout's
# (on sys.path through pytest.ini's `pythonpath`): Home Assistant imports the name with
# its configuration directory first on sys.path, and in tests that directory is the
# plugin's own testing_config/, whose `custom_components` would otherwise win.
import custom_components  # noqa: F401


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from the checkout's `custom_components/`.

    Home Assistant refuses custom integrations in tests unless this fixture is used.
    """

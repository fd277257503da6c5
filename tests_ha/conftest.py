"""Fixtures for the Home Assistant tests (Python 3.14; run by `scripts/ha-test`).

pytest-homeassistant-custom-component is a pytest plugin: it provides Home Assistant's own
test fixtures (`hass`, `enable_custom_integrations`, `aioclient_mock`, ...) by itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from unittest.mock import PropertyMock, patch

import pytest
from syrupy.assertion import SnapshotAssertion

# Imported before any `hass` fixture runs, so that `custom_components` is this checkout's
# (on sys.path through pytest.ini's `pythonpath`): Home Assistant imports the name with
# its configuration directory first on sys.path, and in tests that directory is the
# plugin's own testing_config/, whose `custom_components` would otherwise win.
import custom_components  # noqa: F401
from custom_components.energy_p2p.energy_p2p_client import client as api

from .edge import EdgeHome, FakeEdge, start_demo
from .plugin_workarounds import version_neutral_extension


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Let Home Assistant load integrations from the checkout's `custom_components/`.

    Home Assistant refuses custom integrations in tests unless this fixture is used.
    """


@pytest.fixture(scope="session")
def edge_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[EdgeHome]]:
    """A REAL edge controller: the demo's three homes, one process for the whole session.

    Tests reach it over loopback and must ask for `socket_enabled`. They must not change
    what they do not restore: other tests share these homes.
    """
    demo = start_demo(tmp_path_factory.mktemp("demo"))
    try:
        yield demo.homes
    finally:
        demo.stop()


@pytest.fixture
async def fake_edge(socket_enabled: None) -> AsyncIterator[FakeEdge]:
    """A stand-in edge controller serving recorded responses, for conditions the real one
    cannot be made to produce on demand."""
    edge = FakeEdge()
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()


@pytest.fixture
def fast_reconnect(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reconnect the event stream after 50 ms, 100 ms, ... at most 200 ms."""
    monkeypatch.setattr(api, "RECONNECT_MIN_DELAY", 0.05)
    monkeypatch.setattr(api, "RECONNECT_MAX_DELAY", 0.2)


@pytest.fixture
def entity_registry_enabled_by_default() -> Iterator[None]:
    """Every entity enabled, also those disabled by default (as Home Assistant's own test
    suite does for snapshots of a whole platform)."""
    with patch(
        "homeassistant.helpers.entity.Entity.entity_registry_enabled_default",
        return_value=True,
        new_callable=PropertyMock,
    ):
        yield


@pytest.fixture
def snapshot(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    """Syrupy's snapshot with Home Assistant's extension (registry ids, times and contexts
    as ANY), less the registry fields only some supported releases have
    (plugin_workarounds.py). The plugin defines this fixture too, but syrupy's own plugin
    shadows it."""
    return snapshot.use_extension(version_neutral_extension())

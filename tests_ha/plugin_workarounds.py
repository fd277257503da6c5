"""Where pytest-homeassistant-custom-component and the Home Assistant it runs with disagree:
every workaround for the test plugin, in one place. Loaded before the plugin itself
(`-p tests_ha.plugin_workarounds` in pytest.ini: pytest imports `-p` plugins before the
installed ones), and each one acts only where it is needed.

A plugin release pins one Home Assistant release; the "newest" environment
(tests_ha/requirements-newest.txt) runs the newest plugin (0.13.375, pinning 2026.10.4)
with Home Assistant 2026.11.0, which no plugin release pins yet. When one does, the
workarounds below that this file says are for 2026.11 can go.
"""

from __future__ import annotations

import functools
from typing import Any

# 1. Home Assistant 2026.11 makes `httpx` an alias of `httpx2` when the `homeassistant`
#    package is first imported, and refuses to (RuntimeError) once `httpx` itself was
#    imported. The plugin imports `respx` (which imports httpx) before Home Assistant, so
#    Home Assistant is imported here first. On 2026.10 this import changes nothing.
import homeassistant  # noqa: F401  (imported for its side effect, first)

# 2. Home Assistant 2026.11 moved `_clear_logger_overwrites` from the logger component's
#    package into `logger.helpers`; the plugin's `common.py` still imports it from the
#    package. Re-exported there, under the name the plugin expects.
from homeassistant.components import logger as _logger

if not hasattr(_logger, "_clear_logger_overwrites"):
    from homeassistant.components.logger.helpers import _clear_logger_overwrites

    _logger._clear_logger_overwrites = _clear_logger_overwrites  # type: ignore[attr-defined]


# 3. Registry snapshots are shared by every environment (oldest, current, newest), but
#    Home Assistant 2026.11 adds `compat_name` to every entity registry entry (None for
#    this integration's entities). The snapshots leave out the fields that only some of
#    the releases have, so one snapshot file holds for all three (conftest.py `snapshot`).
#    Built on first use: importing the plugin's modules here, before pytest has loaded
#    the plugin, would keep pytest from rewriting their asserts.
VERSION_SPECIFIC_ENTITY_FIELDS = ("compat_name",)


@functools.cache
def version_neutral_extension() -> Any:
    """Home Assistant's snapshot extension, without release-specific registry fields."""
    from pytest_homeassistant_custom_component.syrupy import (  # noqa: PLC0415
        HomeAssistantSnapshotExtension,
        HomeAssistantSnapshotSerializer,
    )

    class VersionNeutralSerializer(HomeAssistantSnapshotSerializer):
        @classmethod
        def _serializable_entity_registry_entry(cls, data: Any) -> Any:
            serialized = super()._serializable_entity_registry_entry(data)
            for name in VERSION_SPECIFIC_ENTITY_FIELDS:
                serialized.pop(name, None)
            return serialized

    class VersionNeutralSnapshotExtension(HomeAssistantSnapshotExtension):
        serializer_class = VersionNeutralSerializer

    return VersionNeutralSnapshotExtension

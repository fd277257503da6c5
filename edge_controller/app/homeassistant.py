"""The home's devices seen through Home Assistant: the mapping of entities the owner picked
(kept in the data folder, over what `edge.yaml` says) and the relay of their states.

The integration asks which entities to relay (`mapping`), writes the owner's choice
(`set_mapping`) and relays states (`relay`), getting the service calls to carry out in
return. A device id that is not a `homeassistant` device is refused by name.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from edge_controller.app.site import SiteDevice
from edge_controller.devices import capabilities_of
from edge_controller.devices.homeassistant import (
    EntityMappingBody,
    HomeAssistantDevice,
    HomeAssistantProfileSettings,
    RelayBody,
)
from edge_controller.ledger import private_file
from edge_controller.market.checks import ValidationError, from_dict, to_dict
from edge_controller.refusal import Refusal, Why

log = logging.getLogger(__name__)


class HomeAssistantRelay:
    """The `homeassistant` devices of a home and the entities they follow."""

    def __init__(self, devices: list[SiteDevice], path: Path) -> None:
        self._sites = {d.id: d for d in devices if isinstance(d.device, HomeAssistantDevice)}
        self._path = path
        self._saved: dict[str, dict[str, Any]] = {}
        self._load()

    @property
    def devices(self) -> dict[str, HomeAssistantDevice]:
        """The devices, by id."""
        return {
            i: d.device for i, d in self._sites.items() if isinstance(d.device, HomeAssistantDevice)
        }

    def mapping(self) -> dict[str, Any]:
        """`GET homeassistant/entities`: each device, its role and what it follows."""
        return {
            "devices": [
                {
                    "id": site.id,
                    "role": site.role.value,
                    "resource": site.resource_id,
                    **self.devices[site.id].source.view(),
                }
                for site in self._sites.values()
            ],
            "watched": self.watched(),
        }

    def watched(self) -> list[str]:
        """Every entity the integration should relay."""
        ids = [e for d in self.devices.values() for e in d.source.watched()]
        return list(dict.fromkeys(ids))

    def set_mapping(self, body: EntityMappingBody) -> dict[str, Any]:
        """Follow the entities the owner picked, and keep them for the next start."""
        unknown = [i for i in body.devices if i not in self._sites]
        if unknown:
            raise Refusal(
                "unknown_device",
                f"no homeassistant device {', '.join(sorted(unknown))} in edge.yaml "
                f"(there are: {', '.join(sorted(self._sites)) or 'none'})",
                Why.NOT_FOUND,
            )
        for device_id, settings in body.devices.items():
            self._remap(device_id, settings)
            self._saved[device_id] = to_dict(settings)
        # Written beside and renamed over: a crash mid-write leaves the old choice whole.
        partial = self._path.with_suffix(".partial")
        private_file(partial)
        partial.write_text(json.dumps(self._saved, sort_keys=True))
        partial.replace(self._path)
        log.info("Home Assistant entities set for %s", ", ".join(sorted(body.devices)))
        return self.mapping()

    def relay(self, body: RelayBody) -> dict[str, Any]:
        """Take in relayed states and results; the service calls to carry out now."""
        devices = self.devices
        for result in body.results:
            device = devices.get(result.device)
            if device is None:
                continue
            if result.error:
                device.command_failed(result.command, result.error)
            else:
                device.command_done(result.command)
        for device in devices.values():
            device.receive(body.states)
        commands = [c for d in devices.values() for c in d.take_commands()]
        return {"commands": commands, "watched": self.watched()}

    def _load(self) -> None:
        try:
            saved = json.loads(self._path.read_text())
        except FileNotFoundError:
            return
        except (OSError, ValueError) as error:
            log.warning(
                "%s cannot be read (%s): the entities of edge.yaml stand", self._path, error
            )
            return
        for device_id, settings in (saved if isinstance(saved, dict) else {}).items():
            site = self._sites.get(device_id)
            if site is None:
                continue  # the device left edge.yaml; its saved entities go with it
            try:
                chosen = from_dict(HomeAssistantProfileSettings, settings)
            except ValidationError as error:
                log.warning("saved entities of %s ignored: %s", device_id, error)
                continue
            self._remap(device_id, chosen)
            self._saved[device_id] = settings

    def _remap(self, device_id: str, settings: HomeAssistantProfileSettings) -> None:
        site = self._sites[device_id]
        self.devices[device_id].remap(settings.build())
        # Other entities may give other capabilities (a battery once its SoC is named).
        site.capabilities = capabilities_of(site.device)

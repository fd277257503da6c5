"""Repair issues: another API version, a skewed clock, a ledger that stopped advancing.

Each appears when GET status shows the condition and goes away by itself when it is gone;
the fixable ones check again in their repair flow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from freezegun.api import FrozenDateTimeFactory
from homeassistant.components.repairs import repairs_flow_manager
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.energy_p2p.const import DOMAIN
from custom_components.energy_p2p.repairs import clock_offset_ms

from .edge import EdgeHome, FakeEdge, until

pytestmark = pytest.mark.usefixtures("socket_enabled")


def now_ms() -> int:
    return int(dt_util.utcnow().timestamp() * 1000)


def issue(hass: HomeAssistant, kind: str, entry: MockConfigEntry) -> ir.IssueEntry | None:
    return ir.async_get(hass).async_get_issue(DOMAIN, f"{kind}_{entry.entry_id}")


@pytest.fixture
async def repairs(hass: HomeAssistant) -> None:
    assert await async_setup_component(hass, "repairs", {})


@pytest.fixture
def edge(fake_edge: FakeEdge) -> FakeEdge:
    """The fake edge controller with its clock right (the recorded one is hours old)."""
    fake_edge.responses["status"]["time"] = now_ms()
    return fake_edge


async def add(hass: HomeAssistant, edge: FakeEdge) -> MockConfigEntry:
    entry = MockConfigEntry(
        domain=DOMAIN, unique_id=edge.node_id, title="Flat 3", data=edge.entry_data()
    )
    entry.add_to_hass(hass)
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    return entry


@pytest.fixture
async def entry(hass: HomeAssistant, edge: FakeEdge) -> AsyncIterator[MockConfigEntry]:
    entry = await add(hass, edge)
    assert entry.state is ConfigEntryState.LOADED
    await until(hass, lambda: entry.runtime_data.coordinator.stream_connected)
    yield entry
    await hass.config_entries.async_unload(entry.entry_id)


async def fix(hass: HomeAssistant, entry: MockConfigEntry, kind: str) -> dict[str, object]:
    """Open the issue's repair flow and submit it once; returns the flow's answer."""
    manager = repairs_flow_manager(hass)
    assert manager is not None
    form = await manager.async_init(DOMAIN, context={"issue_id": f"{kind}_{entry.entry_id}"})
    assert form["type"] is FlowResultType.FORM
    assert form["step_id"] == "confirm"
    return dict(await manager.async_configure(form["flow_id"], {}))


async def test_a_real_edge_controller_raises_no_issue(
    hass: HomeAssistant, edge_demo: list[EdgeHome]
) -> None:
    home = edge_demo[1]
    entry = MockConfigEntry(domain=DOMAIN, unique_id=home.account, data=home.entry_data())
    entry.add_to_hass(hass)
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert abs(entry.runtime_data.coordinator.health.clock_offset_ms) < 1000
    assert [i for i in ir.async_get(hass).issues.values() if i.domain == DOMAIN] == []
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_another_api_version_raises_an_issue_its_repair_checks_again(
    hass: HomeAssistant, repairs: None, edge: FakeEdge
) -> None:
    edge.responses["status"]["api_version"] = 2
    entry = await add(hass, edge)
    assert entry.state is ConfigEntryState.SETUP_RETRY
    raised = issue(hass, "unsupported_api_version", entry)
    assert raised is not None
    assert raised.is_fixable
    assert raised.severity is ir.IssueSeverity.ERROR
    assert raised.translation_key == "unsupported_api_version"
    assert raised.translation_placeholders == {"title": "Flat 3", "version": "2", "supported": "1"}

    # Nothing changed yet: the flow says so and the issue stays.
    result = await fix(hass, entry, "unsupported_api_version")
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {"base": "still_there"}
    assert issue(hass, "unsupported_api_version", entry) is not None

    # The edge controller was updated: the check loads it and the issue goes.
    edge.responses["status"]["api_version"] = 1
    result = await fix(hass, entry, "unsupported_api_version")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.state is ConfigEntryState.LOADED
    assert issue(hass, "unsupported_api_version", entry) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_skewed_clock_raises_an_issue_that_clears_itself(
    hass: HomeAssistant, repairs: None, edge: FakeEdge
) -> None:
    edge.responses["status"]["time"] = now_ms() + 60_000  # a minute ahead
    entry = await add(hass, edge)
    assert entry.state is ConfigEntryState.LOADED  # it still works, but signs badly
    raised = issue(hass, "clock_skew", entry)
    assert raised is not None
    assert raised.is_fixable
    placeholders = raised.translation_placeholders or {}
    assert placeholders["offset"] in ("+60", "+59")
    assert placeholders["limit"] == "15"

    # The repair flow checks again: still wrong, then right after NTP fixed it.
    result = await fix(hass, entry, "clock_skew")
    assert result["errors"] == {"base": "still_there"}
    edge.responses["status"]["time"] = now_ms()
    result = await fix(hass, entry, "clock_skew")
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert issue(hass, "clock_skew", entry) is None

    # Behind by 20 s: raised at the next read, cleared at the next good one.
    edge.responses["status"]["time"] = now_ms() - 20_000
    await entry.runtime_data.coordinator.async_refresh()
    raised = issue(hass, "clock_skew", entry)
    assert raised is not None
    assert (raised.translation_placeholders or {})["offset"] in ("-20", "-21")
    edge.responses["status"]["time"] = now_ms()
    await entry.runtime_data.coordinator.async_refresh()
    assert issue(hass, "clock_skew", entry) is None
    assert await hass.config_entries.async_unload(entry.entry_id)


async def test_a_ledger_that_stops_advancing_raises_an_issue_the_next_read_clears(
    hass: HomeAssistant, entry: MockConfigEntry, edge: FakeEdge, freezer: FrozenDateTimeFactory
) -> None:
    coordinator = entry.runtime_data.coordinator
    status = edge.responses["status"]
    assert status["ledger"]["height"] == 4
    assert len(status["peers"]) == 2

    # Ten minutes without a block is not yet a stall.
    freezer.tick(timedelta(minutes=10))
    status["time"] = now_ms()
    await coordinator.async_refresh()
    assert issue(hass, "ledger_stalled", entry) is None

    freezer.tick(timedelta(minutes=6))
    status["time"] = now_ms()
    await coordinator.async_refresh()
    raised = issue(hass, "ledger_stalled", entry)
    assert raised is not None
    assert not raised.is_fixable
    assert raised.severity is ir.IssueSeverity.WARNING
    assert raised.translation_placeholders == {
        "title": "Flat 3",
        "height": "4",
        "minutes": "16",
        "peers": "2",
    }

    # The edge controller's ledger moved on: the next read clears it.
    status["ledger"] = {**status["ledger"], "height": 5, "head_time": now_ms()}
    status["time"] = now_ms()
    await coordinator.async_refresh()
    assert issue(hass, "ledger_stalled", entry) is None


async def test_a_block_over_the_websocket_clears_a_stall_at_once(
    hass: HomeAssistant, entry: MockConfigEntry, edge: FakeEdge
) -> None:
    coordinator = entry.runtime_data.coordinator
    # What the coordinator reports at a read 16 minutes on (a frozen clock would also
    # stop the event stream this test needs).
    later = dt_util.utcnow() + timedelta(minutes=16)
    status = {**edge.responses["status"], "time": int(later.timestamp() * 1000)}
    coordinator.health.ledger_seen(status, later)
    assert issue(hass, "ledger_stalled", entry) is not None

    await edge.push("block", {"height": 5, "hash": "ab" * 32, "time": now_ms()})
    await until(hass, lambda: issue(hass, "ledger_stalled", entry) is None)
    assert coordinator.data.status["ledger"]["height"] == 5


async def test_no_stall_is_raised_while_no_peer_is_online(
    hass: HomeAssistant, entry: MockConfigEntry, edge: FakeEdge, freezer: FrozenDateTimeFactory
) -> None:
    edge.responses["status"]["peers"] = []
    freezer.tick(timedelta(hours=1))
    edge.responses["status"]["time"] = now_ms()
    await entry.runtime_data.coordinator.async_refresh()
    await entry.runtime_data.coordinator.async_refresh()
    assert issue(hass, "ledger_stalled", entry) is None


async def test_removing_the_entry_removes_its_issues(hass: HomeAssistant, edge: FakeEdge) -> None:
    edge.responses["status"]["time"] = now_ms() - 120_000
    entry = await add(hass, edge)
    assert issue(hass, "clock_skew", entry) is not None
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert issue(hass, "clock_skew", entry) is None


def test_a_slow_answer_is_not_a_skewed_clock() -> None:
    asked = dt_util.utcnow()
    answered = asked + timedelta(seconds=40)
    asked_ms = int(asked.timestamp() * 1000)
    # Read anywhere during a slow answer: no offset is certain.
    assert clock_offset_ms(asked_ms + 39_000, asked, answered) == 0
    assert clock_offset_ms(asked_ms + 45_000, asked, answered) == 5_000
    assert clock_offset_ms(asked_ms - 3_000, asked, answered) == -3_000


async def test_a_full_disk_raises_an_issue_that_clears_itself_when_writes_work(
    hass: HomeAssistant, entry: MockConfigEntry, edge: FakeEdge
) -> None:
    coordinator = entry.runtime_data.coordinator
    status = edge.responses["status"]
    assert status["storage"]["ok"] is True
    assert issue(hass, "storage_failing", entry) is None

    # As an edge controller whose data directory filled up answers GET status.
    status["storage"] = {
        "ok": False,
        "error": {
            "code": "insufficient_storage",
            "message": "the disk holding /var/lib/energy-p2p/ledger.sqlite3 is full",
            "since": now_ms(),
        },
        "free_bytes": 0,
    }
    await coordinator.async_refresh()
    raised = issue(hass, "storage_failing", entry)
    assert raised is not None
    assert not raised.is_fixable  # it clears itself: nothing to confirm
    assert raised.severity is ir.IssueSeverity.ERROR
    placeholders = raised.translation_placeholders or {}
    assert placeholders["code"] == "insufficient_storage"
    assert placeholders["free"] == "0.0"
    assert "is full" in placeholders["message"]

    # A damaged ledger file is worse: the edge controller will not run on it.
    status["storage"]["error"]["code"] = "damaged_store"
    await coordinator.async_refresh()
    raised = issue(hass, "storage_failing", entry)
    assert raised is not None and raised.severity is ir.IssueSeverity.CRITICAL

    # Space came back and a write went through: the next read clears it.
    status["storage"] = {"ok": True, "error": None, "free_bytes": 5_000_000_000}
    await coordinator.async_refresh()
    assert issue(hass, "storage_failing", entry) is None


async def test_an_edge_controller_without_a_storage_report_raises_nothing(
    hass: HomeAssistant, repairs: None, edge: FakeEdge
) -> None:
    del edge.responses["status"]["storage"]  # an edge controller from before the report
    entry = await add(hass, edge)
    assert entry.state is ConfigEntryState.LOADED
    assert issue(hass, "storage_failing", entry) is None
    assert await hass.config_entries.async_unload(entry.entry_id)

"""A building with many owners (seed 003): its taps read each period, each owner netted,
shared energy allocated, money moved, and prepaid owners cut off and restored.

Every control cycle the building looks at the time; at each period boundary it reads the
energy counters of every tap's device (the same devices, on the same sources, as the rest
of the home), takes what each moved since the last boundary as that tap's reading, and
settles the period (`edge_controller.metering.settle_period`): the tree's owner figures,
peer-to-peer energy from the ledger's trades of each owner's account, the sharing key,
grid prices. A period some accounting tap has no reading for (its meter silent, or just
started) is not settled: nobody is billed for energy that was not measured.

A prepaid owner whose balance reaches zero is cut off through the actuators of their taps
(a USB port, or a command to a device), once; a top-up that lifts the balance above zero
restores them, once. The book is kept on disk, so a restart neither repeats nor forgets a
cut-off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edge_controller.app.building_store import BuildingStore, month_of
from edge_controller.app.site import SiteDevice, guarded
from edge_controller.building_config import BuildingConfig, CutOff, Tap
from edge_controller.ledger import Ledger
from edge_controller.metering import (
    CommunityPeriod,
    Decision,
    MeteringError,
    Restore,
    SettlementPeriod,
    TapReading,
    period_containing,
    settle_period,
    spread,
)
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.charging import UsbCharging

log = logging.getLogger(__name__)

Publish = Callable[[str, Any, int], None]
# Trades whose energy flows: agreed and running, cut short, or settled at what was delivered.
FLOWING = ("active", "terminated", "settled")
MAX_TOP_UP = 10**12
# Counters first seen later than this part of a period into it do not start the period.
LATE_PART = 2


class Building:
    """One building's metering, settlement and prepaid cut-off."""

    def __init__(
        self,
        *,
        config: BuildingConfig,
        devices: list[SiteDevice],
        ledger: Ledger,
        store: BuildingStore,
        publish: Publish,
        usb: Callable[[], UsbCharging | None],
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.store = store
        self._publish = publish
        self._usb = usb
        self._devices = {d.id: d for d in devices}
        self._taps = {t.id: t for t in config.taps}
        # tap -> the boundary last read at, import, export, whether read near that boundary
        self._cursors: dict[str, tuple[int, int, int, bool]] = {}
        self.book = store.book()
        for owner in config.owners:
            if owner.prepaid is not None and owner.id not in self.book.balances:
                self.book = self.book.open_account(owner.id, owner.prepaid)
        store.save(self.book)
        self.last: CommunityPeriod | None = None

    # --- each control cycle ----------------------------------------------------------------

    async def cycle(self, now: int) -> CommunityPeriod | None:
        """Read the taps at a period boundary and settle the period that ended there."""
        period_ms = self.config.period_ms
        boundary = now - now % period_ms
        readings: list[TapReading] = []
        shared: dict[str, int] = {}
        period = SettlementPeriod(boundary - period_ms, boundary)
        owners = self.config.tree.owners_at(period.start_ms)
        for tap in self.config.taps:
            reading = self._read(tap, boundary, period, now)
            if reading is None:
                continue
            readings.append(reading)
            if tap.shared:
                owner = owners[tap.id]
                shared[owner] = shared.get(owner, 0) + reading.export_wh
        if not readings or (
            self.book.settled_until_ms is not None and period.start_ms < self.book.settled_until_ms
        ):
            return None
        try:
            figures = self.config.tree.figures(period, readings)
            p2p_in, p2p_out = self._p2p(period)
            book, settled = settle_period(
                self.book,
                self.config.community,
                figures,
                shared_export=shared,
                p2p_in=p2p_in,
                p2p_out=p2p_out,
            )
        except MeteringError as error:
            log.warning("building period %d not settled: %s", period.start_ms, error.message)
            return None
        self.store.save(book, settled)
        self.book, self.last = book, settled
        await self._act(settled.decisions, now)
        self._publish("building", self.view(now), now)
        return settled

    def _read(
        self, tap: Tap, boundary: int, period: SettlementPeriod, now: int
    ) -> TapReading | None:
        """What the tap's counters moved over `period`, if they were read at its start."""
        device = self._devices.get(tap.device)
        meter = device.capabilities.energy_meter if device is not None else None
        if meter is None:
            return None
        cursor = self._cursors.get(tap.id)
        if cursor is not None and cursor[0] == boundary:
            return None  # read at this boundary already
        imported, exported = meter.import_wh(), meter.export_wh()
        fresh = [s for s in (imported, exported) if s is not None and s.fresh(boundary)]
        if not fresh:
            return None
        import_wh = imported.value if imported is not None else 0
        export_wh = exported.value if exported is not None else 0
        # Counters first seen well into a period do not start it: the next one is the first
        # measured whole.
        whole = cursor is not None or now - boundary <= self.config.period_ms // LATE_PART
        self._cursors[tap.id] = (boundary, import_wh, export_wh, whole)
        if cursor is None or cursor[0] != period.start_ms or not cursor[3]:
            return None  # first sight, or a gap: this period was not measured whole
        if import_wh < cursor[1] or export_wh < cursor[2]:
            return None  # the counters were reset
        return TapReading(tap.id, period, import_wh - cursor[1], export_wh - cursor[2])

    def _p2p(self, period: SettlementPeriod) -> tuple[dict[str, int], dict[str, int]]:
        """What the ledger's trades delivered to and from each owner's account in `period`."""
        accounts = {o.account: o.id for o in self.config.owners if o.account}
        bought: dict[str, int] = {}
        sold: dict[str, int] = {}
        if not accounts:
            return bought, sold
        for trade in self.ledger.state.trades.rows.values():
            if trade.status not in FLOWING or trade.end <= period.start_ms:
                continue
            if trade.start >= period.end_ms:
                continue
            energy = trade.delivered_wh if trade.status == "settled" else trade.energy_wh
            part = spread(energy, trade.start, trade.end, period)
            if trade.buyer in accounts:
                owner = accounts[trade.buyer]
                bought[owner] = bought.get(owner, 0) + part
            if trade.seller in accounts:
                owner = accounts[trade.seller]
                sold[owner] = sold.get(owner, 0) + part
        return bought, sold

    # --- prepaid ---------------------------------------------------------------------------

    async def top_up(self, owner: str, amount: int, now: int) -> dict[str, Any]:
        """Add `amount` milli-units to a prepaid owner's balance; restores a cut-off owner
        whose balance rises above zero."""
        if self.config.owner(owner) is None:
            raise Refusal(
                "unknown_owner", f"{owner} is not an owner of this building", Why.NOT_FOUND
            )
        if owner not in self.book.balances:
            raise Refusal("not_prepaid", f"{owner} has no prepaid account", Why.CONFLICT)
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_TOP_UP:
            raise Refusal(
                "invalid_field", f"amount must be an integer from 1 to {MAX_TOP_UP}", Why.INVALID
            )
        period = period_containing(now, self.config.period_ms)
        book, decisions = self.book.top_up(owner, amount, period)
        self.store.top_up(book, owner, amount, now)
        self.book = book
        await self._act(decisions, now)
        view = self.owner_view(owner, now)
        self._publish("building", self.view(now), now)
        return view

    async def _act(self, decisions: Iterable[Decision], now: int) -> None:
        for decision in decisions:
            on = isinstance(decision, Restore)
            for tap in self._switchable(decision.owner, decision.points):
                assert tap.cut_off is not None
                await self._switch(tap, tap.cut_off, on)
            event = "building_restored" if on else "building_cutoff"
            log.warning("building: %s %s", decision.owner, "restored" if on else "cut off")
            self._publish(event, self.owner_view(decision.owner, now), now)

    def _switchable(self, owner: str, points: tuple[str, ...]) -> list[Tap]:
        """The taps with an actuator at or below `points` (all the owner's own subtrees)."""
        found: list[Tap] = []
        stack = list(points)
        while stack:
            point = stack.pop()
            tap = self._taps.get(point)
            if tap is not None and tap.cut_off is not None:
                found.append(tap)
            stack.extend(self.config.tree.children(point))
        return sorted(found, key=lambda t: t.id)

    async def _switch(self, tap: Tap, cut: CutOff, on: bool) -> None:
        if cut.usb_port is not None:
            usb = self._usb()
            if usb is None:
                log.warning("tap %s: no USB charging to switch port %d", tap.id, cut.usb_port)
                return
            try:
                await usb.set_enabled(cut.usb_port, on)
            except Refusal as refusal:
                log.warning("tap %s: USB port %d: %s", tap.id, cut.usb_port, refusal.message)
            return
        device = self._devices.get(cut.device or "")
        if device is None:
            log.warning("tap %s: no device %s to switch", tap.id, cut.device)
            return
        await guarded(device.device.send(cut.command, cut.on if on else cut.off))

    # --- views -----------------------------------------------------------------------------

    def owner_view(self, owner: str, now: int) -> dict[str, Any]:
        """One owner: balance, cut-off, this month's figures and the last period's."""
        known = self.config.owner(owner)
        if known is None:
            raise Refusal(
                "unknown_owner", f"{owner} is not an owner of this building", Why.NOT_FOUND
            )
        owners = self.config.tree.owners_at(now)
        last = None
        if self.last is not None:
            last = next((r.as_dict() for r in self.last.owners if r.owner == owner), None)
        return {
            "id": owner,
            "name": known.name,
            "account": known.account,
            "taps": sorted(t for t, o in owners.items() if o == owner),
            "prepaid": owner in self.book.balances,
            "balance": self.book.balances.get(owner),
            "cut_off": owner in self.book.cut,
            "month": month_of(now),
            "month_to_date": self.store.month(owner, month_of(now)),
            "totals": dict(self.store.totals(owner)),
            "last_period": last,
        }

    def view(self, now: int) -> dict[str, Any]:
        """`GET building`: settings, taps and every owner."""
        community = self.config.community
        settlement = community.settlement
        owners = self.config.tree.owners_at(now)
        return {
            "period_ms": settlement.period_ms,
            "prices": {
                "buy": settlement.buy_price,
                "sell": settlement.sell_price,
                "shared": community.shared_price,
            },
            "counterparty": settlement.counterparty,
            "sharing": None
            if community.sharing is None
            else {
                "key": community.sharing.key.value,
                "shares": dict(community.sharing.shares),
                "order": list(community.sharing.order),
            },
            "settled_until": self.book.settled_until_ms,
            "taps": [
                {
                    "id": t.id,
                    "owner": owners[t.id],
                    "parent": self.config.tree.point(t.id).parent,
                    "device": t.device,
                    "shared": t.shared,
                    "switchable": t.cut_off is not None,
                }
                for t in self.config.taps
            ],
            "owners": [self.owner_view(o.id, now) for o in self.config.owners],
            "last_period": None
            if self.last is None
            else {"start": self.last.period.start_ms, "pool_wh": self.last.pool_wh},
        }

    def close(self) -> None:
        """Close the building's file."""
        self.store.close()


def open_building(
    config: BuildingConfig | None,
    data_dir: Path,
    devices: list[SiteDevice],
    ledger: Ledger,
    publish: Publish,
    usb: Callable[[], UsbCharging | None],
) -> Building | None:
    """The home's building, its book in `data_dir`; None when edge.yaml has none."""
    if config is None:
        return None
    store = BuildingStore(data_dir / "building.sqlite3")
    return Building(
        config=config, devices=devices, ledger=ledger, store=store, publish=publish, usb=usb
    )

"""Delivery: trades held in the ledger become energy and money.

Every control cycle a home
- drives its devices for the trades the ledger holds whose window is running now (battery
  discharge, fuel-cell setpoint), and only for those: a trade the ledger does not hold, or
  one terminated, gets no setpoint;
- signs a meter reading per settlement period for each of its metered resources, from the
  device's energy counters, with the home's meter key;
- as a seller, settles each trade once its window has been metered: the resource's export
  is allocated to its trades first-in-first-out (seed 000, related patent 001), the trade
  is paid for min(agreed, delivered) and the rest refunded;
- as a buyer with a meter of its own, compares its measured import for the trade with the
  seller's allocated export and records a dispute when they disagree beyond a tolerance
  (the ledger then pays no more than the buyer measured);
- rates the counterparty of every settled trade by how much was delivered, once the
  owner's grace period has passed without the owner rating it (the owner's rating wins).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from edge_controller.app.site import Setpoints, SiteDevice
from edge_controller.devices import EnergyMeter, Quantity
from edge_controller.ledger import (
    LATEST_RULES,
    Resource,
    State,
    Trade,
    allocated_export,
    allocated_import,
    held_energy_wh,
    reading_most_wh,
    trade_power_w,
)
from edge_controller.metering import Tolerance, divide_counted

log = logging.getLogger(__name__)

# A device a running trade needs that stays unreachable this long is worth a warning; less is
# a start-up (the device broker connects after the first control cycle) or a blip.
UNREACHABLE_WARN_MS = 30_000

# How long a settled trade waits for the owner's own rating before the home rates it.
DEFAULT_RATING_GRACE_MS = 86_400_000

Issue = Callable[..., Awaitable[Any]]


@dataclass
class MeterCursor:
    """Where a resource's meter readings stand: the last boundary and counters read."""

    boundary_ms: int
    export_wh: int
    import_wh: int


@dataclass
class Delivery:
    """One home's delivery, metering and settlement duties."""

    account: str
    meter_public: str
    period_ms: int
    issue: Issue
    issue_as_meter: Issue
    tolerance: Tolerance = field(default_factory=Tolerance)
    # The community's rules: the meter's allocation is computed as the ledger computes it.
    rules: int = LATEST_RULES
    # The owner may rate a settled trade first (the API); the home rates it after this.
    rating_grace_ms: int = DEFAULT_RATING_GRACE_MS
    _cursors: dict[str, MeterCursor] = field(default_factory=dict)
    setpoints: Setpoints = field(default_factory=Setpoints)
    _done: set[tuple[str, str]] = field(default_factory=set)
    _retry_at: dict[tuple[str, str], int] = field(default_factory=dict)
    # When this home first saw each trade it has yet to rate settled (since its start).
    _settled_seen: dict[str, int] = field(default_factory=dict)
    # Since when each device a running trade needs could not take a command (-1: said).
    _unreachable: dict[str, int] = field(default_factory=dict)

    @property
    def grace_ms(self) -> int:
        """How long after a window ends its last reading is surely in the ledger."""
        return self.period_ms + self.period_ms // 2

    async def cycle(self, state: State, devices: list[SiteDevice], now: int) -> None:
        await self.drive(state, devices, now)
        await self.read_meters(state, devices, now)
        await self.settle(state, now)
        await self.check_as_buyer(state, now)
        await self.rate(state, now)

    # --- setpoints ----------------------------------------------------------------------

    async def drive(self, state: State, devices: list[SiteDevice], now: int) -> None:
        """Send each owned device the power its running trades ask for; once none runs,
        each device's role decides what it does (a battery returns to its own energy
        management, a fuel cell stops)."""
        for device in devices:
            resource = state.resources.get(device.resource_id)
            if resource is None or resource.owner != self.account:
                continue
            power = sum(
                trade_power_w(state, t)
                for t in _trades_of(state, resource.id)
                if t.status in ("active", "terminated") and t.start <= now < t.end
            )
            # The ledger books trades within the rating; a registration lowered since (or
            # energy trades rounded up) must still not ask the inverter for more than it has.
            power = min(power, resource.power_w)
            if power == 0 and not self.setpoints.taken_over(device.id):
                # No trade runs and we never took the device over: leave it to its owner.
                continue
            if self._reachable(device, now):
                await device.drive(power, self.setpoints)

    def _reachable(self, device: SiteDevice, now: int) -> bool:
        """Whether `device` can take a command now. One that cannot (its broker or link not
        up yet after a start, or gone) is said once it has been so for `UNREACHABLE_WARN_MS`
        (its trades go undelivered meanwhile), and once when it is back."""
        if device.device.connected:
            if self._unreachable.pop(device.id, 0) < 0:
                log.info("%s is reachable again; its trades are driven", device.id)
            return True
        since = self._unreachable.setdefault(device.id, now)
        if since >= 0 and now - since >= UNREACHABLE_WARN_MS:
            log.warning(
                "%s has not been reachable for %d s: the trades it runs are not delivered",
                device.id,
                (now - since) // 1000,
            )
            self._unreachable[device.id] = -1  # said once for this outage
        return False

    # --- meter readings -----------------------------------------------------------------

    async def read_meters(self, state: State, devices: list[SiteDevice], now: int) -> None:
        """At each period boundary, sign what each metered resource exported and imported
        since the last boundary it was read at (a longer period after a gap). Resources
        whose devices read one meter's counters (a GX's battery and PV) share what it moved."""
        boundary = now - now % self.period_ms
        by_counters: dict[str, list[tuple[Resource, EnergyMeter]]] = {}
        for device in devices:
            resource = state.resources.get(device.resource_id)
            meter = device.capabilities.energy_meter
            if (
                resource is None
                or resource.owner != self.account
                or resource.meter != self.meter_public
                or meter is None
            ):
                continue
            by_counters.setdefault(counters_of(device), []).append((resource, meter))
        for counters, metered in by_counters.items():
            exported, imported = metered[0][1].export_wh(), metered[0][1].import_wh()
            fresh = [r for r in (exported, imported) if r is not None and r.fresh(now)]
            if not fresh:
                continue  # the meter is silent: no reading, the window gets what was metered
            export_wh = exported.value if exported is not None else 0
            import_wh = imported.value if imported is not None else 0
            if len(metered) == 1:
                await self.record_meter(state, metered[0][0].id, boundary, export_wh, import_wh)
            else:
                resources = [r for r, _ in metered]
                await self.record_shared(state, counters, resources, boundary, export_wh, import_wh)

    async def record_meter(
        self, state: State, resource_id: str, end: int, export_wh: int, import_wh: int
    ) -> bool:
        """Sign what a resource's energy counters (Wh) moved since its cursor, up to `end`
        (a period boundary, or the end of a USB charging session). True when signed."""
        cursor = self._move_cursor(resource_id, end, export_wh, import_wh)
        if cursor is None:
            return False
        exported, imported = export_wh - cursor.export_wh, import_wh - cursor.import_wh
        return await self._sign(state, resource_id, cursor.boundary_ms, end, exported, imported)

    async def record_shared(
        self,
        state: State,
        counters: str,
        resources: list[Resource],
        end: int,
        export_wh: int,
        import_wh: int,
    ) -> None:
        """Sign one reading for each of `resources`, whose devices read one meter's counters:
        what it moved since its cursor, divided by `divide_counted` (what each resource's
        trades asked of the period first), so no Wh is counted twice."""
        cursor = self._move_cursor(counters, end, export_wh, import_wh)
        if cursor is None:
            return
        starts = {r.id: self._reading_start(state, r.id, cursor.boundary_ms) for r in resources}
        most = {r.id: reading_most_wh(r, starts[r.id], end) for r in resources}
        bound = {r: sys.maxsize if wh is None else wh for r, wh in most.items()}
        asked = {r.id: held_energy_wh(state, r.id, starts[r.id], end) for r in resources}
        exported = divide_counted(export_wh - cursor.export_wh, asked, bound)
        imported = divide_counted(import_wh - cursor.import_wh, {}, bound)
        for r in resources:
            await self._sign(state, r.id, starts[r.id], end, exported[r.id], imported[r.id])

    def _move_cursor(
        self, key: str, end: int, export_wh: int, import_wh: int
    ) -> MeterCursor | None:
        """Where the counters `key` names stood at their last boundary, moving them to `end`;
        None at first sight or after a reset (counting starts here), or before `end`."""
        cursor = self._cursors.get(key)
        if cursor is not None and export_wh >= cursor.export_wh and import_wh >= cursor.import_wh:
            if end <= cursor.boundary_ms:
                return None
        else:
            cursor = None  # first sight, or the counters were reset
        self._cursors[key] = MeterCursor(end, export_wh, import_wh)
        return cursor

    @staticmethod
    def _reading_start(state: State, resource_id: str, since: int) -> int:
        """A reading from `since` starts where the resource's last recorded one ended, if
        later (another reading of it reached the ledger first, e.g. before a restart)."""
        return max(since, _metered_until(state, resource_id))

    async def _sign(
        self, state: State, resource_id: str, since: int, end: int, export_wh: int, import_wh: int
    ) -> bool:
        start = self._reading_start(state, resource_id, since)
        if start >= end:
            return False
        try:
            await self.issue_as_meter(
                "meter_reading",
                resource=resource_id,
                start=start,
                end=end,
                export_wh=export_wh,
                import_wh=import_wh,
            )
        except Exception as exc:  # a Refusal from the ledger: log, move on
            log.warning("meter reading of %s refused: %s", resource_id, exc)
            return False
        return True

    def meter_cursor(self, resource_id: str) -> MeterCursor | None:
        """Where a resource's signed readings stand (None: not read since start-up)."""
        return self._cursors.get(resource_id)

    def resume_meter(
        self, resource_id: str, boundary_ms: int, export_wh: int, import_wh: int
    ) -> None:
        """Go on counting from a cursor kept across a restart (a USB port's)."""
        self._cursors[resource_id] = MeterCursor(boundary_ms, export_wh, import_wh)

    # --- settlement, disputes, ratings --------------------------------------------------

    def _due(self, key: tuple[str, str], now: int, retry_now: bool = False) -> bool:
        if key in self._done:
            return False
        return retry_now or now >= self._retry_at.get(key, 0)

    async def _attempt(self, key: tuple[str, str], now: int, kind: str, **fields: Any) -> bool:
        """Issue a record for `key` once; after a refusal, try again a period later."""
        try:
            await self.issue(kind, **fields)
        except Exception as exc:  # a Refusal from the ledger: retried later
            log.warning("%s of %s refused: %s", kind, key[0][:10], exc)
            self._retry_at[key] = now + self.period_ms
            return False
        self._done.add(key)
        return True

    async def settle(self, state: State, now: int, retry_now: bool = False) -> list[str]:
        """Settle our sales once their window is metered: when the meter's readings reach
        past the window's end (and a little later, so a buyer can dispute first), or, for
        a meter that went silent, some periods after the end. Returns the trades settled.

        `retry_now` (the owner asked to settle now) also retries at once a settlement the
        ledger refused, instead of a period later."""
        settled: list[str] = []
        for trade in list(state.trades.rows.values()):
            key = (trade.id, "settle")
            if (
                trade.seller != self.account
                or trade.status == "settled"
                or not self._due(key, now, retry_now)
            ):
                continue
            if now < trade.end + 2 * self.grace_ms:
                continue
            metered_to = _metered_until(state, trade.resource)
            if metered_to < trade.end and now < trade.end + 6 * self.grace_ms:
                continue
            delivered = allocated_export(state, trade, rules=self.rules)
            if await self._attempt(key, now, "settlement", trade=trade.id, delivered_wh=delivered):
                log.info("settled %s: %d of %d Wh", trade.id[:10], delivered, trade.energy_wh)
                settled.append(trade.id)
        return settled

    async def check_as_buyer(self, state: State, now: int) -> None:
        """Compare what our meter took in for a trade with what the seller's meter sent out;
        dispute before the seller settles when they disagree beyond the tolerance."""
        my_meters = [
            r.id
            for r in state.resources.rows.values()
            if r.owner == self.account and r.kind == "meter" and r.meter
        ]
        if not my_meters:
            return
        for trade in list(state.trades.rows.values()):
            key = (trade.id, "check")
            if (
                trade.buyer != self.account
                or trade.status == "settled"
                or trade.disputed_wh >= 0
                or not self._due(key, now)
            ):
                continue
            # Both meters must have reported past the window's end before comparing.
            covered = min(_metered_until(state, r) for r in (trade.resource, *my_meters))
            if covered < trade.end:
                continue
            seller_wh = allocated_export(state, trade, rules=self.rules)
            buyer_wh = sum(
                allocated_import(state, meter, trade, rules=self.rules) for meter in my_meters
            )
            agree = abs(seller_wh - buyer_wh) <= self.tolerance.allowed_wh(seller_wh, buyer_wh)
            if agree or buyer_wh >= seller_wh:
                # Within tolerance, or we took in more than was sent: nothing to hold back.
                self._done.add(key)
                continue
            reason = f"seller's meter {seller_wh} Wh, ours {buyer_wh} Wh"
            if await self._attempt(
                key, now, "dispute", trade=trade.id, measured_wh=buyer_wh, reason=reason
            ):
                log.warning("disputed %s: %s", trade.id[:10], reason)

    async def rate(self, state: State, now: int) -> None:
        """Rate the counterparty of each settled trade once, by its delivery, when the owner
        has not rated it within `rating_grace_ms` of this home seeing it settled (counted
        again from a restart, so the owner always gets the whole grace)."""
        for trade in list(state.trades.rows.values()):
            if trade.status != "settled" or (trade.id, "rate") in self._done:
                continue
            if trade.buyer == self.account and trade.buyer_rating < 0:
                score = delivery_score(trade)
            elif trade.seller == self.account and trade.seller_rating < 0:
                score = 5 if trade.disputed_wh >= 0 else 10
            else:
                # Rated (by the owner, or by us before a restart): nothing to wait for.
                self._settled_seen.pop(trade.id, None)
                continue
            seen = self._settled_seen.setdefault(trade.id, now)
            if now - seen < self.rating_grace_ms:
                continue
            self._done.add((trade.id, "rate"))
            self._settled_seen.pop(trade.id, None)
            try:
                await self.issue("rating", trade=trade.id, score=score)
            except Exception as exc:  # the owner's rating, still pooled, came first
                log.info("rating of %s refused: %s", trade.id[:10], exc)


def counters_of(device: SiteDevice) -> str:
    """Where a device's energy counters are read: devices configured on one physical device
    (a GX's battery and PV, both reading its grid meter) give the same."""
    d = device.device
    sources = (d.source_of(Quantity.EXPORT_ENERGY_WH), d.source_of(Quantity.IMPORT_ENERGY_WH))
    return repr(sources) if any(sources) else f"device {device.id}"


def _metered_until(state: State, resource: str) -> int:
    """The end of the resource's last recorded meter reading (0: none yet)."""
    meter_log = state.meters.get(resource)
    return meter_log.last_end if meter_log else 0


def delivery_score(trade: Trade) -> int:
    """A mark out of 10 for the seller: the share of the agreed energy that was paid for."""
    if trade.energy_wh == 0:
        return 10
    paid_wh = trade.paid * 1000 // trade.price if trade.price else trade.delivered_wh
    return max(0, min(10, round(10 * min(paid_wh, trade.energy_wh) / trade.energy_wh)))


def _trades_of(state: State, resource: str) -> list[Trade]:
    commitments = state.commitments.get(resource)
    held = commitments.trades if commitments else ()
    return [state.trades.rows[t] for t in held]

"""A PV inverter without a battery sells energy (Wh) over a window from rules 3 on: the
ledger checks it against the registered rating at every instant (what its signed meter
readings may show) and asks for a registered meter; it holds no stored energy. Earlier
rules keep refusing it as energy the inverter does not hold."""

from __future__ import annotations

from edge_controller.ledger import THIRD_RULES, Reason

from .support import HOUR, Community, rejected

METER = "ab" * 32


def street(rules: int) -> tuple[Community, object, object]:
    c = Community(rules=rules)
    ledger = c.node()
    alice, bob = c.key("alice"), c.key("bob")
    c.seal(
        ledger,
        c.register("pv-a", alice, kind="pv", power_w=4_000, capacity_wh=0, meter=METER),
        c.register("pv-x", alice, kind="pv", power_w=4_000, capacity_wh=0),
        c.topup(alice),
        c.topup(bob),
    )
    return c, ledger, (alice, bob)


def test_a_metered_pv_inverter_sells_energy_within_its_rating_under_rules_3() -> None:
    c, ledger, (alice, bob) = street(THIRD_RULES)
    start = c.now + HOUR
    morning = c.offer(alice, "pv-a", 3_000, mode="energy", start=start)  # 3 kW on average
    c.seal(ledger, morning)
    take = c.accept(bob, morning, 3_000)
    c.seal(ledger, take)
    trade = ledger.state.trades.rows[take.id]
    assert trade.energy_wh == 3_000 and trade.committed_wh == 0
    assert ledger.state.resources.rows["pv-a"].committed_wh == 0

    # 1 kW is left in that hour: 2 kWh more would need 2 kW on average.
    more = c.offer(alice, "pv-a", 2_000, mode="energy", start=start)
    error = rejected(ledger, more, Reason.EXCEEDS_CAPACITY)
    assert "1000 W free" in error.message
    c.seal(ledger, c.offer(alice, "pv-a", 1_000, mode="energy", start=start))
    # Over two hours the same 2 kWh is 1 kW on average: within the rating left.
    c.seal(ledger, c.offer(alice, "pv-a", 2_000, mode="energy", start=start + HOUR, hours=2))


def test_a_pv_inverter_without_a_meter_sells_capacity_not_energy() -> None:
    c, ledger, (alice, _) = street(THIRD_RULES)
    error = rejected(ledger, c.offer(alice, "pv-x", 1_000, mode="energy"), Reason.NO_METER)
    assert "pv-x has no registered meter" in error.message
    c.seal(ledger, c.offer(alice, "pv-x", 1_000, mode="capacity"))


def test_earlier_rules_still_refuse_energy_from_a_pv_inverter() -> None:
    c, ledger, (alice, _) = street(THIRD_RULES - 1)
    rejected(ledger, c.offer(alice, "pv-a", 1_000, mode="energy"), Reason.EXCEEDS_ENERGY)

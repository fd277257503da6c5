"""Netting per owner per settlement period, money movements, and prepaid cut-off.

For each period, each owner's consumption and supply are netted (seed 003: "offsetting a
power supply amount and a power consumption amount"). A net importer pays `buy_price`
milli-units per kWh of net import; a net exporter receives `sell_price` per kWh of net
export. The `counterparty` (the grid or community account that buys and sells the rest)
takes the opposite of every movement, so money and energy balance exactly in every period.

Rounding: an owner's money is first computed exactly, in thousandths of a milli-unit
(`wh * price`), and only whole milli-units move. What does not make a whole milli-unit is
*carried* to the owner's next period instead of being dropped: `carry` stays strictly between
-1000 and 1000 and has the sign of what is owed (truncation towards zero, so nobody is ever
paid or charged more than they have accrued). Over any run of periods,
`1000 * sum(movements) + carry == sum(exact values)`, so value is conserved.

Prepaid: owners with an account (`open_account`) have a balance. When a period leaves it at
zero or below, one `CutOff` names the owner's points to switch off; nothing more is said
while it stays there. When a top-up (or a credit for export) lifts it above zero again, one
`Restore` names the same points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from edge_controller.metering.errors import MeteringError, Problem, require_count
from edge_controller.metering.period import SettlementPeriod, check_period_length, is_aligned
from edge_controller.metering.tree import Owner, PeriodFigures

WH_PER_KWH = 1000
# `wh * price` is in milli-units per 1000, so this many of them make one milli-unit.
FRACTIONS_PER_MILLI = WH_PER_KWH


@dataclass(frozen=True)
class SettlementConfig:
    """How settlement runs: period length (1 s .. 30 min), prices per kWh, and who takes the
    other side of every owner's net."""

    period_ms: int = 60_000
    buy_price: int = 300
    sell_price: int = 200
    counterparty: Owner = "grid"

    def __post_init__(self) -> None:
        check_period_length(self.period_ms)
        for name in ("buy_price", "sell_price"):
            try:
                require_count(getattr(self, name), name)
            except MeteringError as error:
                raise MeteringError(Problem.BAD_CONFIG, error.message) from None
        if not self.counterparty:
            raise MeteringError(Problem.BAD_CONFIG, "the counterparty needs an account id")


@dataclass(frozen=True)
class CutOff:
    """Switch off `points` of `owner`: their prepaid balance reached zero in `at_period`."""

    owner: Owner
    points: tuple[str, ...]
    at_period: SettlementPeriod


@dataclass(frozen=True)
class Restore:
    """Switch `points` of `owner` back on: their balance is above zero again."""

    owner: Owner
    points: tuple[str, ...]
    at_period: SettlementPeriod


Decision: TypeAlias = CutOff | Restore


@dataclass(frozen=True)
class Money:
    """What one owner's value for a period became: whole milli-units moved (negative:
    paid), the carry left over (thousandths) and the prepaid balance after (None: none)."""

    movement: int
    carry: int
    balance: int | None


@dataclass(frozen=True)
class OwnerSettlement:
    """One owner's netted energy and money for one period.

    `net_wh` is import minus export (positive: a net consumer). `movement` is the change to
    the owner's money in milli-units (negative: paid). `carry` is what was left over, in
    thousandths of a milli-unit, for the next period.
    """

    owner: Owner
    import_wh: int
    export_wh: int
    net_wh: int
    movement: int
    carry: int
    balance: int | None


@dataclass(frozen=True)
class PeriodSettlement:
    """Everything one period's settlement decided."""

    period: SettlementPeriod
    owners: tuple[OwnerSettlement, ...]
    counterparty: Owner
    counterparty_net_wh: int
    counterparty_movement: int
    decisions: tuple[Decision, ...]

    def owner(self, owner: Owner) -> OwnerSettlement:
        """The settlement of `owner` in this period."""
        for settled in self.owners:
            if settled.owner == owner:
                return settled
        raise MeteringError(Problem.UNKNOWN_ACCOUNT, f"{owner} was not settled in this period")


@dataclass(frozen=True)
class SettlementBook:
    """What settlement remembers between periods; every change returns a new book.

    `balances` holds the prepaid owners only (others are never cut off). `carries` holds each
    owner's sub-milli-unit remainder. `cut` maps each cut-off owner to the points switched off.
    """

    balances: Mapping[Owner, int] = field(default_factory=dict)
    carries: Mapping[Owner, int] = field(default_factory=dict)
    cut: Mapping[Owner, tuple[str, ...]] = field(default_factory=dict)
    settled_until_ms: int | None = None

    def open_account(self, owner: Owner, balance: int) -> SettlementBook:
        """The book with a prepaid account for `owner` holding `balance` milli-units.

        An account opened at zero is cut off by the next settlement, like any other.
        """
        if owner in self.balances:
            raise MeteringError(Problem.DUPLICATE_ACCOUNT, f"{owner} already has an account")
        try:
            require_count(balance, f"opening balance of {owner}")
        except MeteringError as error:
            raise MeteringError(Problem.BAD_AMOUNT, error.message) from None
        return dataclasses.replace(self, balances={**self.balances, owner: balance})

    def top_up(
        self, owner: Owner, amount: int, at_period: SettlementPeriod
    ) -> tuple[SettlementBook, tuple[Decision, ...]]:
        """Add `amount` milli-units to `owner`'s prepaid balance during `at_period`.

        Returns the new book and a `Restore` if this lifts a cut-off owner above zero.
        """
        if owner not in self.balances:
            raise MeteringError(Problem.UNKNOWN_ACCOUNT, f"{owner} has no prepaid account")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
            raise MeteringError(
                Problem.BAD_AMOUNT, f"a top-up must be a positive integer, got {amount!r}"
            )
        book = dataclasses.replace(
            self, balances={**self.balances, owner: self.balances[owner] + amount}
        )
        return book._decide(at_period, {}, only=owner)

    def settle(
        self, config: SettlementConfig, figures: PeriodFigures
    ) -> tuple[SettlementBook, PeriodSettlement]:
        """Net each owner's energy in `figures.period`, move money, and decide cut-offs.

        Periods must be settled in time order, each exactly once; gaps are allowed (a period
        nobody reported for is simply never settled).
        """
        period = figures.period
        self.check_next(config, period, (energy.owner for energy in figures.owners))
        exact: dict[Owner, int] = {}
        for energy in figures.owners:
            net = energy.net_wh
            # Thousandths of a milli-unit: exact, so nothing is lost before the carry.
            exact[energy.owner] = -net * config.buy_price if net > 0 else -net * config.sell_price
        points = {energy.owner: energy.cut_off_points for energy in figures.owners}
        book, money, decisions = self.post(period, exact, points)
        owners = tuple(
            OwnerSettlement(
                owner=energy.owner,
                import_wh=energy.import_wh,
                export_wh=energy.export_wh,
                net_wh=energy.net_wh,
                movement=money[energy.owner].movement,
                carry=money[energy.owner].carry,
                balance=money[energy.owner].balance,
            )
            for energy in figures.owners
        )
        return book, PeriodSettlement(
            period=period,
            owners=owners,
            counterparty=config.counterparty,
            counterparty_net_wh=-sum(o.net_wh for o in owners),
            counterparty_movement=-sum(o.movement for o in owners),
            decisions=decisions,
        )

    def check_next(
        self, config: SettlementConfig, period: SettlementPeriod, owners: Iterable[Owner]
    ) -> None:
        """Refuse a period that is not one aligned period, comes before what is settled, or
        names the counterparty as an owner."""
        if not is_aligned(period, config.period_ms):
            raise MeteringError(
                Problem.WRONG_PERIOD,
                f"{period.start_ms}..{period.end_ms} is not one aligned period of "
                f"{config.period_ms} ms",
            )
        if self.settled_until_ms is not None and period.start_ms < self.settled_until_ms:
            raise MeteringError(
                Problem.ALREADY_SETTLED,
                f"periods up to {self.settled_until_ms} are settled; "
                f"{period.start_ms}..{period.end_ms} comes too late",
            )
        if config.counterparty in set(owners):
            raise MeteringError(
                Problem.BAD_CONFIG,
                f"{config.counterparty} owns metering points and cannot also be the counterparty",
            )

    def post(
        self,
        period: SettlementPeriod,
        exact: Mapping[Owner, int],
        points: Mapping[Owner, tuple[str, ...]],
    ) -> tuple[SettlementBook, dict[Owner, Money], tuple[Decision, ...]]:
        """Book each owner's exact value for `period` (thousandths of a milli-unit, positive:
        the owner is credited): whole milli-units move, the rest is carried; prepaid owners
        whose balance reaches zero are cut off (their `points`), those lifted above it are
        restored. The period counts as settled."""
        carries = dict(self.carries)
        balances = dict(self.balances)
        money: dict[Owner, Money] = {}
        for owner, value in exact.items():
            total = carries.get(owner, 0) + value
            movement = _towards_zero(total)
            carry = total - movement * FRACTIONS_PER_MILLI
            carries[owner] = carry
            balance: int | None = None
            if owner in balances:
                balance = balances[owner] + movement
                balances[owner] = balance
            money[owner] = Money(movement, carry, balance)
        book = dataclasses.replace(
            self, balances=balances, carries=carries, settled_until_ms=period.end_ms
        )
        book, decisions = book._decide(period, points)
        return book, money, decisions

    def _decide(
        self,
        period: SettlementPeriod,
        points: Mapping[Owner, tuple[str, ...]],
        only: Owner | None = None,
    ) -> tuple[SettlementBook, tuple[Decision, ...]]:
        # Decisions are edges, not levels: the `cut` map remembers who is already off.
        # A top-up decides for its own owner only; others wait for a settlement, which knows
        # their points.
        cut = dict(self.cut)
        decisions: list[Decision] = []
        for owner in sorted(self.balances) if only is None else [only]:
            balance = self.balances[owner]
            if balance <= 0 and owner not in cut:
                cut[owner] = points.get(owner, ())
                decisions.append(CutOff(owner, cut[owner], period))
            elif balance > 0 and owner in cut:
                decisions.append(Restore(owner, cut.pop(owner), period))
        return dataclasses.replace(self, cut=cut), tuple(decisions)


def _towards_zero(fractions: int) -> int:
    """Whole milli-units in `fractions` thousandths, rounded towards zero."""
    whole = abs(fractions) // FRACTIONS_PER_MILLI
    return whole if fractions >= 0 else -whole

"""One period of a building or community: peer-to-peer, shared and grid energy side by
side, and the money each owner's part moves.

Each owner's figure from the tap tree (`PeriodFigures`) is split, in this order, so no Wh
is counted twice:

1. peer to peer: what the ledger's trades delivered to or from the owner's account in the
   period, at most what the owner's taps measured;
2. shared: of what is left, the consumption is covered from the shared pool by the
   community's key (`Sharing`); the pool is what the owners of shared taps (a shared PV
   roof, a community battery) exported beyond their own use and their peer-to-peer sales,
   at most what those taps measured;
3. grid: the rest, bought from or sold to the counterparty.

Money (seed 003's points): a consumer pays `shared_price` per kWh of shared energy to its
producers, `buy_price` per kWh of grid import to the counterparty; a producer receives
`sell_price` per kWh of grid export. Peer-to-peer energy is paid on the ledger, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from edge_controller.metering.errors import require_count
from edge_controller.metering.period import SettlementPeriod
from edge_controller.metering.settlement import Decision, SettlementBook, SettlementConfig
from edge_controller.metering.sharing import Sharing, pro_rata
from edge_controller.metering.tree import Owner, PeriodFigures


@dataclass(frozen=True)
class CommunityConfig:
    """Settlement (period, grid prices, counterparty), the shared energy's price per kWh
    and the sharing key (None: nothing is shared)."""

    settlement: SettlementConfig = field(default_factory=SettlementConfig)
    shared_price: int = 0
    sharing: Sharing | None = None

    def __post_init__(self) -> None:
        require_count(self.shared_price, "shared_price")


@dataclass(frozen=True)
class OwnerPeriod:
    """One owner's energy in one period, split by where it came from or went, and the
    money it moved (milli-units; negative: paid)."""

    owner: Owner
    import_wh: int
    export_wh: int
    p2p_in_wh: int
    p2p_out_wh: int
    shared_in_wh: int
    shared_out_wh: int
    grid_import_wh: int
    grid_export_wh: int
    movement: int
    carry: int
    balance: int | None

    def as_dict(self) -> dict[str, int | str | None]:
        """The row as JSON."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class CommunityPeriod:
    """Everything one period's settlement decided."""

    period: SettlementPeriod
    owners: tuple[OwnerPeriod, ...]
    pool_wh: int
    counterparty: Owner
    counterparty_movement: int
    decisions: tuple[Decision, ...]

    def owner(self, owner: Owner) -> OwnerPeriod:
        """The row of `owner` (KeyError when it had no tap in the period)."""
        return next(o for o in self.owners if o.owner == owner)


def settle_period(
    book: SettlementBook,
    config: CommunityConfig,
    figures: PeriodFigures,
    *,
    shared_export: Mapping[Owner, int] | None = None,
    p2p_in: Mapping[Owner, int] | None = None,
    p2p_out: Mapping[Owner, int] | None = None,
) -> tuple[SettlementBook, CommunityPeriod]:
    """Settle one period: split each owner's energy into peer-to-peer, shared and grid,
    and move the money. `shared_export` is what each owner's shared taps measured going
    out in the period; `p2p_in` / `p2p_out` what the ledger's trades delivered."""
    settlement = config.settlement
    period = figures.period
    book.check_next(settlement, period, (e.owner for e in figures.owners))
    shared_export, p2p_in, p2p_out = shared_export or {}, p2p_in or {}, p2p_out or {}
    bought = {e.owner: min(p2p_in.get(e.owner, 0), e.import_wh) for e in figures.owners}
    sold = {e.owner: min(p2p_out.get(e.owner, 0), e.export_wh) for e in figures.owners}
    demand = {e.owner: e.import_wh - bought[e.owner] for e in figures.owners}
    offered = {
        e.owner: min(e.export_wh - sold[e.owner], shared_export.get(e.owner, 0))
        for e in figures.owners
        if shared_export.get(e.owner, 0) > 0
    }
    pool = sum(offered.values())
    shared_in = config.sharing.allocate(pool, demand) if config.sharing and pool else {}
    # Producers sell what was allocated in proportion to what each offered.
    shared_out = pro_rata(sum(shared_in.values()), offered)
    exact: dict[Owner, int] = {}
    rows: list[tuple[Owner, int, int, int, int, int, int, int, int]] = []
    for energy in figures.owners:
        owner = energy.owner
        got, gave = shared_in.get(owner, 0), shared_out.get(owner, 0)
        grid_in = energy.import_wh - bought[owner] - got
        grid_out = energy.export_wh - sold[owner] - gave
        # Thousandths of a milli-unit: exact, so nothing is lost before the carry.
        exact[owner] = (
            grid_out * settlement.sell_price
            - grid_in * settlement.buy_price
            + (gave - got) * config.shared_price
        )
        split = (bought[owner], sold[owner], got, gave, grid_in, grid_out)
        rows.append((owner, energy.import_wh, energy.export_wh, *split))
    points = {e.owner: e.cut_off_points for e in figures.owners}
    book, money, decisions = book.post(period, exact, points)
    owners = tuple(
        OwnerPeriod(*row, money[row[0]].movement, money[row[0]].carry, money[row[0]].balance)
        for row in rows
    )
    return book, CommunityPeriod(
        period=period,
        owners=owners,
        pool_wh=pool,
        counterparty=settlement.counterparty,
        counterparty_movement=-sum(o.movement for o in owners),
        decisions=decisions,
    )


def spread(energy_wh: int, start_ms: int, end_ms: int, period: SettlementPeriod) -> int:
    """The Wh of `energy_wh`, delivered evenly over [start_ms, end_ms), that fall in
    `period`; over consecutive periods the parts add up to `energy_wh` exactly."""
    length = end_ms - start_ms
    if length <= 0:
        return 0
    first = min(max(period.start_ms, start_ms), end_ms) - start_ms
    last = min(max(period.end_ms, start_ms), end_ms) - start_ms
    return energy_wh * last // length - energy_wh * first // length

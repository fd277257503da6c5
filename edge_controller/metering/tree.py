"""The metering-point tree of seed 003: taps that measure amount and direction, with owners.

Each `MeteringPoint` ("tap") measures the energy that flows through it in each settlement
period, in both directions: `import_wh` flows downstream (towards the loads, i.e. consumed
behind the point) and `export_wh` flows upstream (towards the grid, i.e. supplied from
behind the point). Points nest: a point's `parent` is the point directly upstream of it, and
a point with no parent is a grid connection point.

Whose energy is whose (seed 003, FIG. 6 and FIG. 7):

- The topmost point of each stretch of one owner's points is that owner's *accounting
  point*: its parent is missing or belongs to someone else. Only accounting points count.
  The other points of the same owner below it are sub-meters whose flows already passed
  through the accounting point, so counting them again would be double counting.
- An accounting point's figure is its own reading minus the readings of the accounting
  points of *other* owners directly downstream of its stretch, direction by direction
  ("subtracts the power amount in the same direction").
- Summed over all owners, the figures telescope to what the grid connection points measured:
  no energy is created or lost by the bookkeeping.

When other owners' flows offset each other behind a point inside one period (a tenant's
solar export feeding another tenant's load never crosses the landlord's point), a
subtraction can come out negative in one direction. The net (import minus export) is then
still exact, but the split into directions is not, so the figure collapses to its net.

Ownership changes by `Transfer`, effective from a UTC ms instant. A reading belongs to the
owner in force at the start of its period, so a transfer inside a period takes effect from
the next period boundary.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

from edge_controller.metering.errors import MeteringError, Problem, require_count
from edge_controller.metering.period import SettlementPeriod

Owner: TypeAlias = str
"""An owner's account id, as the ledger knows it."""


@dataclass(frozen=True)
class MeteringPoint:
    """A tap: an id, the owner it was installed for, and the point directly upstream."""

    id: str
    owner: Owner
    parent: str | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise MeteringError(Problem.UNKNOWN_POINT, "a metering point needs an id")
        if not self.owner:
            raise MeteringError(Problem.BAD_TRANSFER, f"metering point {self.id} needs an owner")
        if self.parent == self.id:
            raise MeteringError(Problem.CYCLE, f"metering point {self.id} is its own parent")


@dataclass(frozen=True)
class TapReading:
    """What one metering point measured in one period, in each direction."""

    point: str
    period: SettlementPeriod
    import_wh: int
    export_wh: int

    def __post_init__(self) -> None:
        require_count(self.import_wh, f"import_wh of {self.point}")
        require_count(self.export_wh, f"export_wh of {self.point}")

    @property
    def net_wh(self) -> int:
        """Import minus export: positive when the point consumed more than it supplied."""
        return self.import_wh - self.export_wh


@dataclass(frozen=True)
class Transfer:
    """A metering point passing to `owner` from `effective_ms` (UTC) on."""

    point: str
    owner: Owner
    effective_ms: int


@dataclass(frozen=True)
class PointFigure:
    """An accounting point's own energy in a period, after other owners' flows are removed."""

    point: str
    owner: Owner
    measured_import_wh: int
    measured_export_wh: int
    subtracted: tuple[str, ...]
    import_wh: int
    export_wh: int

    @property
    def net_wh(self) -> int:
        """Import minus export of the corrected figure."""
        return self.import_wh - self.export_wh


@dataclass(frozen=True)
class OwnerEnergy:
    """One owner's energy in a period, over all of their accounting points.

    `cut_off_points` are the owner's points that can be switched off without switching off
    anyone else: the tops of subtrees that hold only this owner's points. A point with
    another owner's point downstream (a landlord's point above the tenants) is never among
    them, because opening its breaker would cut the tenants off too.
    """

    owner: Owner
    import_wh: int
    export_wh: int
    points: tuple[str, ...]
    accounting_points: tuple[str, ...]
    cut_off_points: tuple[str, ...]

    @property
    def net_wh(self) -> int:
        """Import minus export: positive when the owner consumed more than they supplied."""
        return self.import_wh - self.export_wh


@dataclass(frozen=True)
class PeriodFigures:
    """Every owner's energy in one period, and what the grid connection points measured."""

    period: SettlementPeriod
    points: tuple[PointFigure, ...]
    owners: tuple[OwnerEnergy, ...]
    grid_import_wh: int
    grid_export_wh: int

    @property
    def grid_net_wh(self) -> int:
        """Import minus export at the grid connection points."""
        return self.grid_import_wh - self.grid_export_wh

    def owner(self, owner: Owner) -> OwnerEnergy:
        """The figures of `owner`; an owner with no point in this period is an error."""
        for energy in self.owners:
            if energy.owner == owner:
                return energy
        raise MeteringError(
            Problem.UNKNOWN_ACCOUNT, f"{owner} owns no metering point in {self.period}"
        )

    def point(self, point_id: str) -> PointFigure:
        """The figure of accounting point `point_id`."""
        for figure in self.points:
            if figure.point == point_id:
                return figure
        raise MeteringError(
            Problem.UNKNOWN_POINT, f"{point_id} is not an accounting point in {self.period}"
        )


@dataclass(frozen=True)
class MeteringTree:
    """Validated metering points plus the ownership transfers recorded for them.

    Refuses duplicate ids, parents that do not exist and cycles. Several grid connection
    points (points without a parent) are allowed: a community may have more than one.
    """

    points: tuple[MeteringPoint, ...]
    transfers: tuple[Transfer, ...] = ()
    _by_id: Mapping[str, MeteringPoint] = field(init=False, repr=False, compare=False)
    _children: Mapping[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)
    _order: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_id: dict[str, MeteringPoint] = {}
        for point in self.points:
            if point.id in by_id:
                raise MeteringError(
                    Problem.DUPLICATE_POINT, f"metering point {point.id} is listed twice"
                )
            by_id[point.id] = point
        for point in self.points:
            if point.parent is not None and point.parent not in by_id:
                raise MeteringError(
                    Problem.UNKNOWN_PARENT,
                    f"metering point {point.id} names parent {point.parent}, which does not exist",
                )
        _refuse_cycles(by_id)
        children: dict[str, list[str]] = {point_id: [] for point_id in by_id}
        for point in self.points:
            if point.parent is not None:
                children[point.parent].append(point.id)
        frozen_children = {key: tuple(sorted(ids)) for key, ids in children.items()}
        # Parents before children, siblings by id: every walk over the tree is deterministic.
        order: list[str] = []
        stack = sorted((p.id for p in self.points if p.parent is None), reverse=True)
        while stack:
            current = stack.pop()
            order.append(current)
            stack.extend(reversed(frozen_children[current]))
        object.__setattr__(self, "_by_id", by_id)
        object.__setattr__(self, "_children", frozen_children)
        object.__setattr__(self, "_order", tuple(order))
        self._check_transfers()

    def _check_transfers(self) -> None:
        last: dict[str, Transfer] = {}
        for transfer in self.transfers:
            point = self._by_id.get(transfer.point)
            if point is None:
                raise MeteringError(
                    Problem.UNKNOWN_POINT,
                    f"cannot transfer unknown metering point {transfer.point}",
                )
            if not transfer.owner:
                raise MeteringError(
                    Problem.BAD_TRANSFER, f"a transfer of {transfer.point} needs a new owner"
                )
            previous = last.get(transfer.point)
            if previous is not None and transfer.effective_ms <= previous.effective_ms:
                raise MeteringError(
                    Problem.BAD_TRANSFER,
                    f"{transfer.point} already changed owner at {previous.effective_ms}; "
                    f"transfers are recorded in time order",
                )
            current = previous.owner if previous is not None else point.owner
            if transfer.owner == current:
                raise MeteringError(
                    Problem.BAD_TRANSFER,
                    f"{transfer.point} already belongs to {current} at {transfer.effective_ms}",
                )
            last[transfer.point] = transfer

    def point(self, point_id: str) -> MeteringPoint:
        """The metering point `point_id`."""
        try:
            return self._by_id[point_id]
        except KeyError:
            raise MeteringError(Problem.UNKNOWN_POINT, f"no metering point {point_id}") from None

    def children(self, point_id: str) -> tuple[str, ...]:
        """The points directly downstream of `point_id`, by id."""
        self.point(point_id)
        return self._children[point_id]

    def owner_at(self, point_id: str, at_ms: int) -> Owner:
        """Who owns `point_id` at `at_ms`: the last transfer effective by then, else the
        owner it was installed for."""
        owner = self.point(point_id).owner
        for transfer in self.transfers:
            if transfer.point == point_id and transfer.effective_ms <= at_ms:
                owner = transfer.owner
        return owner

    def owners_at(self, at_ms: int) -> dict[str, Owner]:
        """The owner of every point at `at_ms`."""
        return {point_id: self.owner_at(point_id, at_ms) for point_id in self._order}

    def transfer(self, point_id: str, new_owner: Owner, effective_ms: int) -> MeteringTree:
        """The tree with `point_id` passing to `new_owner` from `effective_ms` on.

        Readings of periods that start before `effective_ms` stay with the old owner.
        """
        return MeteringTree(
            self.points, (*self.transfers, Transfer(point_id, new_owner, effective_ms))
        )

    def figures(self, period: SettlementPeriod, readings: Iterable[TapReading]) -> PeriodFigures:
        """Each owner's energy in `period` from the points' readings (seed 003, FIG. 7).

        Every accounting point needs a reading; sub-meters below an accounting point of the
        same owner may report or not, since their flows are already inside its reading.
        """
        by_point = self._readings_by_point(period, readings)
        owners = self.owners_at(period.start_ms)
        accounting = {
            point_id
            for point_id in self._order
            if (parent := self._by_id[point_id].parent) is None
            or owners[parent] != owners[point_id]
        }
        missing = [
            point_id
            for point_id in self._order
            if point_id in accounting and point_id not in by_point
        ]
        if missing:
            raise MeteringError(
                Problem.MISSING_READING,
                f"no reading in {period.start_ms}..{period.end_ms} for accounting point(s) "
                + ", ".join(missing),
            )
        # The accounting point whose stretch each point lies in.
        head: dict[str, str] = {}
        subtract: dict[str, list[str]] = {point_id: [] for point_id in accounting}
        for point_id in self._order:
            parent = self._by_id[point_id].parent
            if point_id in accounting:
                head[point_id] = point_id
                if parent is not None:
                    subtract[head[parent]].append(point_id)
            else:
                assert parent is not None  # a point without a parent is always accounting
                head[point_id] = head[parent]
        figures: list[PointFigure] = []
        for point_id in self._order:
            if point_id not in accounting:
                continue
            own = by_point[point_id]
            others = [by_point[other] for other in subtract[point_id]]
            import_wh = own.import_wh - sum(r.import_wh for r in others)
            export_wh = own.export_wh - sum(r.export_wh for r in others)
            if import_wh < 0 or export_wh < 0:
                net = import_wh - export_wh
                import_wh, export_wh = max(net, 0), max(-net, 0)
            figures.append(
                PointFigure(
                    point=point_id,
                    owner=owners[point_id],
                    measured_import_wh=own.import_wh,
                    measured_export_wh=own.export_wh,
                    subtracted=tuple(subtract[point_id]),
                    import_wh=import_wh,
                    export_wh=export_wh,
                )
            )
        roots = [by_point[p] for p in self._order if self._by_id[p].parent is None]
        return PeriodFigures(
            period=period,
            points=tuple(figures),
            owners=self._owner_energies(owners, figures),
            grid_import_wh=sum(r.import_wh for r in roots),
            grid_export_wh=sum(r.export_wh for r in roots),
        )

    def _readings_by_point(
        self, period: SettlementPeriod, readings: Iterable[TapReading]
    ) -> dict[str, TapReading]:
        by_point: dict[str, TapReading] = {}
        for reading in readings:
            if reading.point not in self._by_id:
                raise MeteringError(
                    Problem.UNKNOWN_POINT, f"a reading names unknown metering point {reading.point}"
                )
            if reading.period != period:
                raise MeteringError(
                    Problem.WRONG_PERIOD,
                    f"the reading of {reading.point} covers "
                    f"{reading.period.start_ms}..{reading.period.end_ms}, "
                    f"not the settlement period {period.start_ms}..{period.end_ms}",
                )
            if reading.point in by_point:
                raise MeteringError(
                    Problem.DUPLICATE_READING,
                    f"{reading.point} reported twice for {period.start_ms}..{period.end_ms}",
                )
            by_point[reading.point] = reading
        return by_point

    def _owner_energies(
        self, owners: Mapping[str, Owner], figures: list[PointFigure]
    ) -> tuple[OwnerEnergy, ...]:
        # A subtree is "pure" when every point in it has its top's owner.
        pure: dict[str, bool] = {}
        for point_id in reversed(self._order):
            pure[point_id] = all(
                pure[child] and owners[child] == owners[point_id]
                for child in self._children[point_id]
            )
        result: list[OwnerEnergy] = []
        for owner in sorted(set(owners.values())):
            mine = [f for f in figures if f.owner == owner]
            points = tuple(p for p in self._order if owners[p] == owner)
            cut_off = tuple(
                p
                for p in points
                if pure[p] and ((parent := self._by_id[p].parent) is None or not pure[parent])
            )
            result.append(
                OwnerEnergy(
                    owner=owner,
                    import_wh=sum(f.import_wh for f in mine),
                    export_wh=sum(f.export_wh for f in mine),
                    points=points,
                    accounting_points=tuple(f.point for f in mine),
                    cut_off_points=cut_off,
                )
            )
        return tuple(result)


def _refuse_cycles(by_id: Mapping[str, MeteringPoint]) -> None:
    """Walk up from every point; meeting a point twice on one walk is a loop of parents."""
    reaches_root: set[str] = set()
    for start in by_id:
        path: list[str] = []
        on_path: set[str] = set()
        current: str | None = start
        while current is not None and current not in reaches_root:
            if current in on_path:
                loop = path[path.index(current) :]
                raise MeteringError(
                    Problem.CYCLE,
                    "metering points form a loop of parents (child -> parent): "
                    + " -> ".join([*loop, current]),
                )
            path.append(current)
            on_path.add(current)
            current = by_id[current].parent
        reaches_root.update(path)

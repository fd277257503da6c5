"""`building:` in `edge.yaml`: a building's meters as a tree of taps with owners (seed 003),
how its periods are settled and how its shared energy is allocated (docs/buildings.md).

Read by the one checker like every other section: each mistake is reported with its path
(`building.taps[2].parent: names tap 'attic', which is not in building.taps`). What needs
the rest of the file (a tap's device in `devices:`, a cut-off's USB port in `usb:`) is
checked by the document in `config.py`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, ClassVar

from edge_controller.devices.profiles import Command
from edge_controller.market.checks import Between, Checks, Expect, NonEmpty, OneOf
from edge_controller.metering import (
    CommunityConfig,
    MeteringError,
    MeteringPoint,
    MeteringTree,
    Problem,
    SettlementConfig,
    Sharing,
    SharingKey,
    Transfer,
)

Text = Annotated[str, NonEmpty()]
Price = Annotated[int, Between(0, 10**9)]
ACCOUNT_PREFIX = "ep"
ACCOUNT_LENGTH = 42


@dataclass(frozen=True)
class CutOff:
    """How a tap is switched off and on: a USB port, or a command to a device."""

    usb_port: int | None = None
    device: str | None = None
    command: Command = Command.START_STOP
    off: int = 0
    on: int = 1


@dataclass(frozen=True)
class Tap:
    """A tap as the building reads it: which device's energy counters, whether what it
    exports is shared, and how it is cut off."""

    id: str
    device: str
    shared: bool = False
    cut_off: CutOff | None = None


@dataclass(frozen=True)
class BuildingOwner:
    """An owner: the ledger account whose trades and fees are theirs (if any) and the
    opening balance of a prepaid account (None: not prepaid)."""

    id: str
    name: str
    account: str | None = None
    prepaid: int | None = None


@dataclass(frozen=True)
class BuildingConfig:
    """The building as the home runs it."""

    tree: MeteringTree
    taps: tuple[Tap, ...]
    owners: tuple[BuildingOwner, ...]
    community: CommunityConfig

    @property
    def period_ms(self) -> int:
        """The settlement period."""
        return self.community.settlement.period_ms

    def owner(self, owner_id: str) -> BuildingOwner | None:
        """The owner `owner_id`, or None."""
        return next((o for o in self.owners if o.id == owner_id), None)


# --- the section as written ------------------------------------------------------------------


@dataclass(frozen=True)
class CutOffSection:
    """`cut_off:` of a tap: `usb_port: N`, or `device:` with the `command` it takes and
    the values that switch it `off` and `on`."""

    usb_port: Annotated[int, Between(1, 15)] | None = None
    device: Text | None = None
    command: Annotated[str, OneOf(tuple(c.value for c in Command))] = Command.START_STOP.value
    off: Annotated[int, Between(-(10**6), 10**6)] = 0
    on: Annotated[int, Between(-(10**6), 10**6)] = 1

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(
            (self.usb_port is None) != (self.device is None),
            "usb_port" if self.usb_port is not None else "device",
            "name either usb_port or device (the actuator that switches the tap)",
        )
        checks.done()


@dataclass(frozen=True)
class TapSection:
    """One entry of `taps:`."""

    id: Text
    owner: Text
    device: Text
    parent: Text | None = None
    shared: bool = False
    cut_off: CutOffSection | None = None


@dataclass(frozen=True)
class OwnerSection:
    """One entry of `owners:`."""

    id: Text
    name: Annotated[str, Expect("a text")] | None = None
    account: Annotated[str, Expect("a ledger account id (ep and 40 hex digits)")] | None = None
    prepaid: Annotated[int, Between(0, 10**12)] | None = None

    def __post_init__(self) -> None:
        checks = Checks()
        account = self.account
        checks.require(
            account is None
            or (
                len(account) == ACCOUNT_LENGTH
                and account.startswith(ACCOUNT_PREFIX)
                and all(c in "0123456789abcdef" for c in account[2:])
            ),
            "account",
            "expected a ledger account id (ep and 40 lower-case hex digits)",
        )
        checks.done()


@dataclass(frozen=True)
class TransferSection:
    """One entry of `transfers:`: `tap` passes to `owner` from `since` (an ISO date or
    date and time, UTC unless it says otherwise)."""

    tap: Text
    owner: Text
    since: Annotated[str, Expect('an ISO date such as "2026-12-01"')]
    since_ms: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        checks = Checks()
        try:
            when = datetime.fromisoformat(self.since)
        except ValueError:
            checks.require(False, "since", f"{self.since!r} is not an ISO date or date and time")
            checks.done()
            return
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        object.__setattr__(self, "since_ms", int(when.timestamp() * 1000))


@dataclass(frozen=True)
class SharingSection:
    """`sharing:`: the key, its shares (static) or order (priority), and the price per kWh
    a consumer pays the producers for shared energy."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    key: Annotated[str, OneOf(tuple(k.value for k in SharingKey))] = SharingKey.DYNAMIC.value
    shares: dict[str, Annotated[int, Between(0, 10**6)]] | None = None
    order: Annotated[tuple[str, ...], Expect("a list of owner ids")] = ()
    price: Price = 0

    def __post_init__(self) -> None:
        checks = Checks()
        if self.key == SharingKey.STATIC:
            checks.require(
                bool(self.shares) and sum((self.shares or {}).values()) > 0,
                "shares",
                "a static key needs shares that add up to more than 0",
            )
        if self.key == SharingKey.PRIORITY:
            checks.require(bool(self.order), "order", "a priority key needs an order of owners")
            checks.require(len(set(self.order)) == len(self.order), "order", "names an owner twice")
        checks.done()


@dataclass(frozen=True)
class BuildingSection:
    """`building:`: period, grid prices, owners, taps, transfers and the sharing key."""

    owners: Annotated[tuple[OwnerSection, ...], Expect("a list of owners")]
    taps: Annotated[tuple[TapSection, ...], Expect("a list of taps")]
    # Seed 003 and the EU's sharing rules: seconds to 30 minutes, the quarter hour by default.
    period_s: Annotated[int, Between(1, 1800)] = 900
    buy_price: Price = 300
    sell_price: Price = 80
    counterparty: Text = "grid"
    transfers: Annotated[tuple[TransferSection, ...], Expect("a list of transfers")] = ()
    sharing: SharingSection | None = None

    def __post_init__(self) -> None:
        checks = Checks()
        problems = list(self._problems())
        if not problems:
            # Loops of parents are found by building the tree, once every name is known.
            try:
                self.tree()
            except MeteringError as error:
                where = "transfers" if error.problem is Problem.BAD_TRANSFER else "taps"
                problems.append((where, error.message))
        for path, message in problems:
            checks.require(False, path, message)
        checks.done()

    def _problems(self) -> Iterable[tuple[str, str]]:
        owners: set[str] = set()
        for i, owner in enumerate(self.owners):
            if owner.id in owners:
                yield f"owners[{i}].id", f"{owner.id!r} is listed twice"
            if owner.id == self.counterparty:
                yield f"owners[{i}].id", f"{owner.id!r} is the counterparty, not an owner"
            owners.add(owner.id)
        if not self.taps:
            yield "taps", "a building needs at least one tap"
        taps: set[str] = set()
        for i, tap in enumerate(self.taps):
            if tap.id in taps:
                yield f"taps[{i}].id", f"{tap.id!r} is listed twice"
            taps.add(tap.id)
            if tap.owner not in owners:
                yield f"taps[{i}].owner", f"{tap.owner!r} is not in building.owners"
        for i, tap in enumerate(self.taps):
            if tap.parent is not None and tap.parent not in taps:
                yield f"taps[{i}].parent", f"names tap {tap.parent!r}, which is not in taps"
        for i, transfer in enumerate(self.transfers):
            if transfer.tap not in taps:
                yield f"transfers[{i}].tap", f"{transfer.tap!r} is not in building.taps"
            if transfer.owner not in owners:
                yield f"transfers[{i}].owner", f"{transfer.owner!r} is not in building.owners"
        sharing = self.sharing
        if sharing is not None:
            for name in sharing.shares or {}:
                if name not in owners:
                    yield f"sharing.shares.{name}", "is not in building.owners"
            for i, name in enumerate(sharing.order):
                if name not in owners:
                    yield f"sharing.order[{i}]", f"{name!r} is not in building.owners"
            if not any(tap.shared for tap in self.taps):
                yield "sharing", "no tap is shared: mark the shared PV or battery shared: true"

    def tree(self) -> MeteringTree:
        """The taps as a metering tree, with the ownership transfers."""
        return MeteringTree(
            tuple(MeteringPoint(t.id, t.owner, t.parent) for t in self.taps),
            tuple(Transfer(t.tap, t.owner, t.since_ms) for t in self.transfers),
        )

    def config(self) -> BuildingConfig:
        """The building as the home runs it."""
        sharing = self.sharing
        key = None
        if sharing is not None:
            key = Sharing(SharingKey(sharing.key), dict(sharing.shares or {}), sharing.order)
        taps = tuple(
            Tap(
                t.id,
                t.device,
                t.shared,
                None
                if t.cut_off is None
                else CutOff(
                    t.cut_off.usb_port,
                    t.cut_off.device,
                    Command(t.cut_off.command),
                    t.cut_off.off,
                    t.cut_off.on,
                ),
            )
            for t in self.taps
        )
        return BuildingConfig(
            tree=self.tree(),
            taps=taps,
            owners=tuple(
                BuildingOwner(o.id, o.name or o.id, o.account, o.prepaid) for o in self.owners
            ),
            community=CommunityConfig(
                SettlementConfig(
                    period_ms=self.period_s * 1000,
                    buy_price=self.buy_price,
                    sell_price=self.sell_price,
                    counterparty=self.counterparty,
                ),
                shared_price=sharing.price if sharing else 0,
                sharing=key,
            ),
        )

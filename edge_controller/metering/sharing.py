"""Community sharing keys: how a period's shared energy (a shared PV roof, a community
battery) is allocated among the owners who consume in that period.

The three keys energy-sharing rules name (EU directive 2019/944 art. 15a as transposed by
Austria's energy communities and Luxembourg's sharing groups), each per period and each
limited by what the owner consumed in it:

- `static`: each owner gets a fixed share of the pool; a share its owner does not consume
  is surplus (it goes to the grid, it is not handed to the others).
- `dynamic`: the pool is shared pro rata to what each owner consumed.
- `priority`: owners in a fixed order each take what they consumed until the pool is used
  up; owners not in the order get nothing from the pool.

All amounts are whole Wh. A pro-rata split hands the Wh that rounding leaves over to the
largest remainders (ties: by owner id), so a split never creates or loses a Wh.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from edge_controller.metering.errors import MeteringError, Problem, require_count
from edge_controller.metering.tree import Owner


class SharingKey(StrEnum):
    """How a community allocates its shared energy in each period."""

    STATIC = "static"
    DYNAMIC = "dynamic"
    PRIORITY = "priority"


@dataclass(frozen=True)
class Sharing:
    """A sharing key and its parameters: `shares` (static: parts per owner, e.g. percent)
    and `order` (priority: owners first to last)."""

    key: SharingKey = SharingKey.DYNAMIC
    shares: Mapping[Owner, int] = field(default_factory=dict)
    order: tuple[Owner, ...] = ()

    def __post_init__(self) -> None:
        if self.key is SharingKey.STATIC:
            if not self.shares:
                raise MeteringError(Problem.BAD_CONFIG, "a static key needs shares")
            for owner, share in self.shares.items():
                require_count(share, f"the share of {owner}")
            if sum(self.shares.values()) == 0:
                raise MeteringError(Problem.BAD_CONFIG, "a static key's shares add up to 0")
        if self.key is SharingKey.PRIORITY:
            if not self.order:
                raise MeteringError(Problem.BAD_CONFIG, "a priority key needs an order")
            if len(set(self.order)) != len(self.order):
                raise MeteringError(Problem.BAD_CONFIG, "a priority order names an owner twice")

    def allocate(self, pool_wh: int, demands: Mapping[Owner, int]) -> dict[Owner, int]:
        """Each consuming owner's Wh of the `pool_wh` shared in a period, by this key.

        Every allocation is at most the owner's demand; they add up to at most the pool
        (the rest is surplus, exported). Owners with no demand are left out."""
        require_count(pool_wh, "the shared pool")
        for owner, demand in demands.items():
            require_count(demand, f"the demand of {owner}")
        wanting = {o: d for o, d in demands.items() if d > 0}
        if self.key is SharingKey.STATIC:
            shares = pro_rata(pool_wh, self.shares)
            allocation = {o: min(d, shares.get(o, 0)) for o, d in wanting.items()}
        elif self.key is SharingKey.DYNAMIC:
            if sum(wanting.values()) <= pool_wh:
                allocation = dict(wanting)
            else:
                allocation = pro_rata(pool_wh, wanting)
        else:
            left = pool_wh
            allocation = {}
            for owner in self.order:
                take = min(left, wanting.get(owner, 0))
                allocation[owner] = take
                left -= take
        return {o: wh for o, wh in sorted(allocation.items()) if wh > 0}


def pro_rata(total: int, weights: Mapping[Owner, int]) -> dict[Owner, int]:
    """`total` Wh split in proportion to `weights`, whole Wh that add up to `total` (or to 0
    when every weight is 0); the rounding's leftover Wh go to the largest remainders."""
    weight_sum = sum(weights.values())
    if weight_sum == 0 or total == 0:
        return {owner: 0 for owner in weights}
    parts = {owner: total * w // weight_sum for owner, w in weights.items()}
    left = total - sum(parts.values())
    by_remainder = sorted(weights, key=lambda o: (-(total * weights[o] % weight_sum), o))
    for owner in by_remainder[:left]:
        parts[owner] += 1
    return parts

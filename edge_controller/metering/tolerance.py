"""How far a seller's and a buyer's figures for one trade may differ before it is a dispute."""

from __future__ import annotations

from dataclasses import dataclass

from edge_controller.metering.errors import MeteringError, Problem, require_count


@dataclass(frozen=True)
class Tolerance:
    """How far seller and buyer may differ before it is a dispute: the larger of `percent`
    of the larger figure (rounded down) and `min_wh` (meters disagree by a few Wh even when
    nothing is wrong, so small trades need a floor)."""

    percent: int = 2
    min_wh: int = 5

    def __post_init__(self) -> None:
        for name in ("percent", "min_wh"):
            try:
                require_count(getattr(self, name), name)
            except MeteringError as error:
                raise MeteringError(Problem.BAD_CONFIG, error.message) from None

    def allowed_wh(self, seller_wh: int, buyer_wh: int) -> int:
        """The largest difference that is still agreement."""
        return max(self.min_wh, max(seller_wh, buyer_wh) * self.percent // 100)

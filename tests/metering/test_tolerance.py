"""How far a seller's and a buyer's figures may differ before the buyer disputes."""

from __future__ import annotations

import pytest

from edge_controller.metering import MeteringError, Problem, Tolerance


def test_the_tolerance_is_a_percentage_with_a_floor():
    tolerance = Tolerance(percent=2, min_wh=5)
    # 2 % of 500 = 10; 2 % of 150 is 3, below the 5 Wh floor; 2 % of 408 = 8.
    assert tolerance.allowed_wh(500, 490) == 10
    assert tolerance.allowed_wh(150, 145) == 5
    assert tolerance.allowed_wh(400, 408) == 8


def test_a_negative_tolerance_is_refused():
    with pytest.raises(MeteringError, match=Problem.BAD_CONFIG.value):
        Tolerance(percent=-1)

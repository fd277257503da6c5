"""`divide_counted`: what one meter counted for several resources, divided so that no Wh
counts twice and none shows more than its rating gives."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edge_controller.metering import divide_counted

MOST = {"battery": 13, "pv": 25}


def test_the_trades_running_get_what_they_asked_and_the_surplus_goes_to_the_others() -> None:
    # The battery's trade asked 3 Wh of the period; 20 Wh left the home: the other 17 are
    # the PV's, which sold nothing.
    assert divide_counted(20, {"battery": 3}, MOST) == {"battery": 3, "pv": 17}
    # 33 Wh: more than the PV gives (25); the last 5 are the battery's after all.
    assert divide_counted(33, {"battery": 3}, MOST) == {"battery": 8, "pv": 25}
    # Without a trade running, by the room each rating leaves (a tie's Wh: by id).
    assert divide_counted(19, {}, MOST) == {"battery": 7, "pv": 12}


def test_less_than_the_trades_asked_is_shared_pro_rata_and_nothing_goes_elsewhere() -> None:
    assert divide_counted(6, {"battery": 4, "pv": 8}, MOST) == {"battery": 2, "pv": 4}
    assert divide_counted(0, {"battery": 4}, MOST) == {"battery": 0, "pv": 0}


def test_more_than_every_rating_gives_fills_each_to_its_rating_and_no_further() -> None:
    assert divide_counted(50, {"battery": 4}, MOST) == MOST


@given(
    st.integers(0, 10_000),
    st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3_000), min_size=1),
    st.lists(st.integers(0, 3_000), min_size=4, max_size=4),
)
def test_no_wh_is_made_or_lost_and_none_passes_its_rating(
    counted: int, most: dict[str, int], asked_list: list[int]
) -> None:
    asked = dict(zip("abcd", asked_list, strict=True))
    parts = divide_counted(counted, asked, most)
    assert parts.keys() == most.keys()
    assert sum(parts.values()) == min(counted, sum(most.values()))
    for resource, part in parts.items():
        assert 0 <= part <= most[resource]
        asked_here = min(asked[resource], most[resource])
        if counted >= sum(min(asked[r], m) for r, m in most.items()):
            assert part >= asked_here
        idle_room = sum(m for r, m in most.items() if min(asked[r], m) == 0)
        if asked_here and counted <= sum(min(asked[r], m) for r, m in most.items()) + idle_room:
            assert part <= asked_here, "the surplus went to a resource selling while others idled"

"""One meter counting for several resources: a home's grid meter behind a Victron GX (or
another hybrid system) counts what its battery and its PV export together, and neither has
counters of its own. Each period, what that meter moved is divided among the resources so
that no Wh is counted twice and none shows more than its rating gives:

- first, each resource gets the Wh its running trades asked of the period (pro rata when
  the meter moved less than they asked together);
- what is left goes to the room each resource's rating leaves in the period, pro rata:
  first to the resources no trade asked anything of (a battery driven for its trade gave
  what the trade asked; the surplus is the PV's), then, if they are full, to all;
- what no rating holds is no resource's: more than every resource behind the meter could
  give came from something not registered, and none of it was sold.
"""

from __future__ import annotations

from collections.abc import Mapping

from edge_controller.metering.sharing import pro_rata


def divide_counted(
    counted_wh: int, asked_wh: Mapping[str, int], most_wh: Mapping[str, int]
) -> dict[str, int]:
    """`counted_wh` of one meter divided among the resources of `most_wh` (each one's most
    in the period): what each one's trades asked (`asked_wh`, 0 where absent) first; the
    rest by the room left, to the resources no trade asked anything of before the others.
    Whole Wh; the parts add up to `counted_wh` unless it is more than every resource's most
    together."""
    parts = {r: min(asked_wh.get(r, 0), most) for r, most in most_wh.items()}
    left = counted_wh - sum(parts.values())
    if left <= 0:
        return pro_rata(counted_wh, parts)
    for tier in ([r for r in most_wh if parts[r] == 0], list(most_wh)):
        room = {r: most_wh[r] - parts[r] for r in tier}
        extra = pro_rata(min(left, sum(room.values())), room)
        for r, wh in extra.items():
            parts[r] += wh
        left -= sum(extra.values())
    return parts

"""A home signs several records as one act (a registrar's approval: the member, its
resources, an opening top-up, a sealer) all or none: when the ledger refuses one, none of
them is pooled or sent, so a request is never left half approved."""

from __future__ import annotations

import pytest

from edge_controller.refusal import Refusal
from tests.app.test_rooms_alone import Street


async def test_a_refused_record_takes_the_ones_before_it_back_and_nothing_is_sent() -> None:
    street = Street()
    street.fund(street.community.topup(street.home_key, 5_000))
    to = street.neighbour.account
    transfers = [{"kind": "transfer", "to": to, "amount": a} for a in (1_000, 2_000, 3_000)]
    with pytest.raises(Refusal) as refused:
        await street.node.issue_all(transfers)
    assert refused.value.code == "insufficient_funds"
    assert not street.ledger.pool and street.link.records() == []

    sent = await street.node.issue_all(transfers[:2])
    assert [r.seq for r in sent] == [1, 2] and list(street.ledger.pool) == [r.id for r in sent]
    assert [r["body"]["amount"] for r in street.link.records()] == [1_000, 2_000]


async def test_an_approval_whose_resource_is_refused_signs_no_member_and_no_top_up() -> None:
    street = Street()
    community = street.community
    registrar = community.registrar
    newcomer = community.key("newcomer")
    approval = [
        {"kind": "member", "account": newcomer.account, "name": "Sunny House"},
        {"kind": "topup", "to": newcomer.account, "amount": 1_000},
        {
            "kind": "registration",
            "resource": "sunny/battery",
            "owner": newcomer.account,
            "resource_kind": "battery",
            "power_w": 3_000,
            "capacity_wh": 5_000,
            "available_wh": 6_000,
        },
    ]
    with pytest.raises(Refusal) as refused:
        await street.node.issue_all(approval, registrar)
    assert refused.value.code == "exceeds_energy"
    assert not street.ledger.pool and street.link.records() == []
    # Asked again without the resource, the whole approval goes through.
    sent = await street.node.issue_all(approval[:2], registrar)
    assert [r.kind for r in sent] == ["member", "topup"]
    assert len(street.link.records()) == 2

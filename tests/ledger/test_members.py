"""Rules 3: the registrar names members (`member` records), records that one left or that
its key was revoked, and certifies resource updates; earlier rules keep their refusals."""

from __future__ import annotations

import pytest

from edge_controller.ledger import Reason
from edge_controller.ledger.genesis import SECOND_RULES

from .support import Community, rejected
from .test_rules import Town, make_town


@pytest.fixture
def town() -> Town:
    return make_town(Community())


def test_a_member_record_names_an_account_and_a_registrar_alone_signs_it(town: Town) -> None:
    c = town.c
    rejected(
        town.ledger,
        c.sign(town.bob, "member", account=town.bob.account, name="Bob's"),
        Reason.NOT_REGISTRAR,
    )
    c.seal(town.ledger, c.sign(c.registrar, "member", account=town.alice.account, name="Sunny"))
    member = town.ledger.state.members.rows[town.alice.account]
    assert (member.name, member.status) == ("Sunny", "active")


def test_a_member_that_left_only_closes_what_it_holds(town: Town) -> None:
    c = town.c
    offer = c.offer(town.alice, "fc-a", 1_000)
    c.seal(town.ledger, offer)
    c.seal(
        town.ledger,
        c.sign(c.registrar, "member", account=town.alice.account, name="Sunny", status="left"),
    )
    error = rejected(town.ledger, c.offer(town.alice, "fc-a", 1_000), Reason.MEMBER_LEFT)
    assert "Sunny left the community" in error.message
    c.seal(town.ledger, c.sign(town.alice, "cancel", offer=offer.id))


def test_a_revoked_key_signs_nothing_and_stays_revoked(town: Town) -> None:
    c = town.c
    revoke = c.sign(c.registrar, "member", account=town.bob.account, name="B", status="revoked")
    c.seal(town.ledger, revoke)
    rejected(
        town.ledger,
        c.sign(town.bob, "transfer", to=town.carol.account, amount=1),
        Reason.MEMBER_REVOKED,
    )
    rejected(
        town.ledger,
        c.sign(c.registrar, "member", account=town.bob.account, name="B"),
        Reason.MEMBER_REVOKED,
    )


def test_a_registrar_certifies_a_resource_update_on_rules_3(town: Town) -> None:
    c = town.c
    update = c.sign(c.registrar, "resource_update", resource="fc-a", available_wh=9)
    c.seal(town.ledger, update)
    assert town.ledger.state.resources.rows["fc-a"].available_wh == 9


def test_rules_2_keep_refusing_a_registrars_update_and_member_records() -> None:
    town = make_town(Community(rules=SECOND_RULES))
    c = town.c
    error = rejected(
        town.ledger,
        c.sign(c.registrar, "resource_update", resource="fc-a", available_wh=9),
        Reason.NOT_OWNER,
    )
    assert "owner or meter" in error.message
    rejected(
        town.ledger,
        c.sign(c.registrar, "member", account=town.alice.account, name="Sunny"),
        Reason.MALFORMED,
    )

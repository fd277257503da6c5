"""A community keeps the rules it was founded on: a genesis file from before rule versions
reads as the first rules with its community id unchanged, and a new community is founded
on the latest rules."""

from __future__ import annotations

import json

import pytest

from edge_controller.ledger import FIRST_RULES, LATEST_RULES, Consensus, Genesis, Rejected

# A genesis file as `energy-p2p-edge genesis` wrote it before rules had versions.
BEFORE_VERSIONS = {
    "name": "Elm Street",
    "currency": "ELM",
    "currency_name": "",
    "time": 1_800_000_000_000,
    "registrars": ["11" * 32],
    "consensus": {
        "mode": "poa",
        "block_interval_ms": 5_000,
        "confirmations": 6,
        "max_block_bytes": 2_000_000,
        "max_block_records": 5_000,
        "max_future_ms": 15_000,
        "min_fee": 0,
        "sealers": ["22" * 32],
    },
}


def test_a_genesis_from_before_rule_versions_keeps_the_first_rules_and_its_id() -> None:
    genesis = Genesis.from_json(json.loads(json.dumps(BEFORE_VERSIONS)))
    assert genesis.consensus.rules == FIRST_RULES
    assert genesis.to_json() == BEFORE_VERSIONS  # so its community id is what it was


def test_a_new_community_is_founded_on_the_latest_rules_and_says_so() -> None:
    genesis = Genesis("Oak Lane", "OAK", 0, ("11" * 32,), Consensus(sealers=("22" * 32,)))
    assert genesis.consensus.rules == LATEST_RULES
    written = genesis.to_json()
    assert written["consensus"]["rules"] == LATEST_RULES
    assert Genesis.from_json(written) == genesis


def test_rules_no_node_knows_are_refused() -> None:
    future = json.loads(json.dumps(BEFORE_VERSIONS))
    future["consensus"]["rules"] = LATEST_RULES + 1
    with pytest.raises(Rejected, match="rules"):
        Genesis.from_json(future)

"""The demo community kept in a folder: its genesis, the registrar's and every home's keys,
and the registrar's records for each home, so a restart on the same folder continues the
same community and registers nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

from edge_controller.app.identity import load_or_create_key
from edge_controller.community.book import BOOK_FILE, Book, Registry
from edge_controller.community.files import write_private
from edge_controller.community.invitation import check_invitation
from edge_controller.community.operations import REQUEST_FILE, invite, membership_request
from edge_controller.ledger import Consensus, Genesis, KeyPair, Rejected
from edge_controller.simulation.plan import HomePlan

TOP_UP = 200_000  # milli-units: 200 units of the community currency per home
# What a data dir keeps so that the next start continues the same community: this file
# (the genesis), the registrar's key beside it, and each home's keys in its own folder.
COMMUNITY_FILE = "demo-community.json"
COMMUNITY_KIND = "energy-p2p demo community"
REGISTRAR_KEY = "registrar.key"
NODE_KEY = "node.key"
METER_KEY = "meter.key"


class DemoDataError(Exception):
    """The data dir holds something the demo cannot continue from."""


def load_or_create_community(
    folder: Path,
    plans: list[HomePlan],
    now: int,
    genesis: Genesis | None,
    genesis_file: Path,
    block_interval_ms: int = 2_000,
) -> tuple[Genesis, KeyPair, set[str]]:
    """The community in `folder`: its registrar key (`REGISTRAR_KEY`) and each home's keys
    (`<slug>/NODE_KEY`, `<slug>/METER_KEY`), created when missing, given to `plans`.
    `genesis` is the one the caller read from `genesis_file` (named in errors), or None
    for a new "Demo Street" genesis, which the caller saves in its own format. Returns the
    genesis, the registrar and the slugs of the homes whose keys are new this start: only
    they get a top-up. Raises `DemoDataError` when the keys are not those the genesis names."""
    new_homes: set[str] = set()
    try:
        if genesis is not None:
            # A sealer's lost key cannot be replaced: the genesis names it for good.
            for plan in plans[: len(genesis.consensus.sealers)]:
                if not (folder / plan.slug / NODE_KEY).exists():
                    raise DemoDataError(f"{folder / plan.slug / NODE_KEY} is missing")
        registrar = load_or_create_key(folder / REGISTRAR_KEY)
        for plan in plans:
            if not (folder / plan.slug / NODE_KEY).exists():
                new_homes.add(plan.slug)
            plan.key = load_or_create_key(folder / plan.slug / NODE_KEY)
            plan.meter = load_or_create_key(folder / plan.slug / METER_KEY)
    except (OSError, ValueError) as exc:
        raise DemoDataError(f"{folder}: cannot read or write a key: {exc}") from None
    if genesis is None:
        genesis = Genesis(
            name="Demo Street",
            currency="DEMO",
            currency_name="Demo Street credits",
            time=now - 1_000,
            registrars=(registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=block_interval_ms,
                sealers=tuple(p.key.public_hex for p in plans[:3]),
                confirmations=2,
            ),
        )
        return genesis, registrar, new_homes
    if registrar.public_hex not in genesis.registrars:
        raise DemoDataError(
            f"{folder / REGISTRAR_KEY} is not the registrar of the community in {genesis_file}"
        )
    for plan, sealer in zip(plans, genesis.consensus.sealers, strict=False):
        if plan.key.public_hex != sealer:
            raise DemoDataError(
                f"{folder / plan.slug / NODE_KEY} is not the key the community in"
                f" {genesis_file} names as sealer"
            )
    return genesis, registrar, new_homes


def demo_registry(folder: Path) -> Registry:
    """The registrar's book of the demo, beside its key (the demo's broker has no files)."""
    return Registry(folder, broker_dir=folder / "broker")


def invite_new_homes(
    folder: Path,
    genesis: Genesis,
    registrar: KeyPair,
    plans: list[HomePlan],
    new_homes: set[str],
    broker_port: int,
    now: int,
) -> None:
    """The path a street walks: the registrar invites each home new this start, and the
    home writes its signed membership request (its resources, as its devices back them),
    which its edge controller sends the registrar over the broker for approval."""
    registry = demo_registry(folder)
    if not (folder / BOOK_FILE).exists():
        registry.save(Book(genesis.community_id, "127.0.0.1", broker_port))
    for plan in plans:
        if plan.slug not in new_homes:
            continue
        issued = invite(registry, registrar, plan.name, 1, now, genesis=genesis, qr=False)
        invitation = check_invitation(json.loads(Path(issued["file"]).read_text()), now)
        resources = [
            {
                "resource": r.id,
                "kind": r.kind,
                "power_w": r.power_w,
                "capacity_wh": r.capacity_wh,
                "available_wh": r.available_wh,
            }
            for r in plan.resources
        ]
        request = membership_request(invitation, plan.key, plan.meter, plan.name, resources, now)
        write_private(folder / plan.slug / REQUEST_FILE, json.dumps(request, indent=2) + "\n")


def read_community(path: Path) -> Genesis:
    """The genesis of the demo community kept in `path`, or `DemoDataError` saying why not."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DemoDataError(f"{path} is not a demo community file: {exc}") from None
    if type(data) is not dict or data.get("kind") != COMMUNITY_KIND:
        raise DemoDataError(f"{path} is not a demo community file (no kind {COMMUNITY_KIND!r})")
    try:
        return Genesis.from_json(data.get("genesis"))
    except Rejected as exc:
        raise DemoDataError(f"{path}: bad genesis: {exc}") from None

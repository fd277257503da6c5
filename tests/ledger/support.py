"""A small community for ledger tests: deterministic keys, a clock, signing with sequences."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from edge_controller.ledger import (
    Block,
    Consensus,
    Genesis,
    KeyPair,
    Ledger,
    Reason,
    Record,
    Rejected,
    sign_record,
)
from edge_controller.ledger.store import Store

START = 1_800_000_000_000  # 2027-01-15, UTC ms
HOUR = 3_600_000


class Community:
    """Keys, a genesis and a shared clock; signs records with each key's next sequence."""

    def __init__(self, mode: str = "poa", sealers: int = 1, **consensus: Any) -> None:
        self.registrar = KeyPair.from_seed(b"registrar")
        self.sealers = [KeyPair.from_seed(f"sealer-{i}".encode()) for i in range(sealers)]
        # These tests fund only the buyers; the minimum balance has its own tests
        # (tests/attacks/test_spam.py).
        params: dict[str, Any] = {
            "mode": mode,
            "block_interval_ms": 2_000,
            "confirmations": 2,
            "min_balance": 0,
        }
        if mode == "poa":
            params["sealers"] = tuple(k.public_hex for k in self.sealers)
        else:
            params.update(initial_bits=4, min_bits=1, retarget_window=8)
        params.update(consensus)
        self.genesis = Genesis(
            name="Sunny Street",
            currency="SUN",
            time=START - HOUR,
            registrars=(self.registrar.public_hex,),
            consensus=Consensus(**params),
        )
        self.community = self.genesis.community_id
        self.now = START
        self._seq: dict[str, int] = defaultdict(int)
        self._keys: dict[str, KeyPair] = {}

    def key(self, name: str) -> KeyPair:
        if name not in self._keys:
            self._keys[name] = KeyPair.from_seed(name.encode())
        return self._keys[name]

    def sign(self, key: KeyPair, kind: str, /, **fields: Any) -> Record:
        """A record of `kind` signed by `key`, with its next sequence number."""
        self._seq[key.public_hex] += 1
        body = {"kind": kind, "seq": self._seq[key.public_hex], "time": self.now, **fields}
        return sign_record(key, self.community, body)

    def node(self, store: Store | None = None) -> Ledger:
        return Ledger(self.genesis, store=store, clock=lambda: self.now)

    def seal(self, ledger: Ledger, *records: Record, sealer: int = 0) -> Block:
        """Submit `records`, seal a block with them and connect it; returns the block."""
        for record in records:
            ledger.submit(record)
        self.now += 1_000
        key = self.sealers[sealer % len(self.sealers)]
        block = ledger.build_block(key, now=self.now)
        assert block is not None, "the sealer may not seal now"
        result = ledger.add_block(block)
        assert result.status == "connected", result
        return block

    # -- common records -------------------------------------------------------------------

    def register(
        self,
        resource: str,
        owner: KeyPair,
        kind: str = "fuel_cell",
        power_w: int = 10_000,
        capacity_wh: int = 100_000,
        **extra: Any,
    ) -> Record:
        return self.sign(
            self.registrar,
            "registration",
            resource=resource,
            owner=owner.account,
            resource_kind=kind,
            power_w=power_w,
            capacity_wh=capacity_wh,
            **extra,
        )

    def topup(self, to: KeyPair, amount: int = 1_000_000) -> Record:
        return self.sign(self.registrar, "topup", to=to.account, amount=amount)

    def offer(
        self,
        seller: KeyPair,
        resource: str,
        quantity: int,
        mode: str = "capacity",
        price: int = 300,
        start: int | None = None,
        hours: int = 1,
        **extra: Any,
    ) -> Record:
        start = self.now + HOUR if start is None else start
        return self.sign(
            seller,
            "offer",
            resource=resource,
            mode=mode,
            quantity=quantity,
            price=price,
            start=start,
            end=start + hours * HOUR,
            expires=extra.pop("expires", start),
            **extra,
        )

    def accept(self, buyer: KeyPair, offer: Record, quantity: int, **extra: Any) -> Record:
        return self.sign(buyer, "acceptance", offer=offer.id, quantity=quantity, **extra)

    def reading(
        self, meter: KeyPair, resource: str, start: int, export_wh: int, minutes: int = 60
    ) -> Record:
        """`meter`'s reading of `resource` over `minutes` from `start` (no import)."""
        return self.sign(
            meter,
            "meter_reading",
            resource=resource,
            start=start,
            end=start + minutes * 60_000,
            export_wh=export_wh,
            import_wh=0,
        )


def rejected(ledger: Ledger, record: Record | dict[str, Any], reason: Reason) -> Rejected:
    """Submit `record`, expect the ledger to refuse it for `reason`, return the rejection."""
    with pytest.raises(Rejected) as info:
        ledger.submit(record)
    assert info.value.reason == reason, info.value
    return info.value

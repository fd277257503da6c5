"""The genesis file: what defines a community and its consensus rules.

Every node of a community starts from the same genesis file. Its canonical hash is the
community id, which every signature covers, so records and blocks of one community are
meaningless in another.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .canonical import canonical_bytes
from .errors import Reason, Rejected
from .records import HEX64, integer, obj, one_of, text

ConsensusMode = Literal["pow", "poa"]

# The rules a community runs by. A genesis file without `rules` is a community founded on
# the first rules, and keeps them: rules that change what is valid come with a new number,
# and each rule that is not in every version asks `consensus.rules` whether it applies.
FIRST_RULES = 1
# Rules 2: the hostile-member and load rules (bounded blocks, PoA finality, money rules...).
SECOND_RULES = 2
# Rules 3: what a real street needs to run for years (registrar-certified resource updates,
# energy sales by homes without a battery, state checkpoints in block headers...). Each
# rule of this version asks `consensus.rules >= THIRD_RULES`.
THIRD_RULES = 3
# Rules 4: closed business is forgotten (`forget.py`): settled trades, closed offers and
# requests, answered counter-offers and old meter readings leave the state some time after
# they closed, so a year-old community's state (and every checkpoint and snapshot) holds
# what is open and recent, not its whole history. Each rule of it asks `rules >= FOURTH_RULES`.
FOURTH_RULES = 4
LATEST_RULES = FOURTH_RULES
# What an account must hold (balance plus escrow, milli-units) for its records to count,
# on the latest rules: any money at all, so only keys the community funded speak. Not more:
# a phone's charging wallet is prepaid a few milli-units.
DEFAULT_MIN_BALANCE = 1
# Rules 2 on: how far past its highest sequence an account's next record may jump. Gaps come
# only from records that never reached a block (refused, or lost with a home's pool), and a
# node keeps at most a few hundred of an account's records waiting: a million is twelve
# days of a record a second that all went nowhere, far beyond any outage an outbox replays.
MAX_SEQUENCE_JUMP = 1 << 20
# Rules 3 on: every this many blocks a block header carries the digest of the state its
# block starts from (`checkpoint.py`); 0: no checkpoints. 720 blocks: an hour at 5 s blocks.
DEFAULT_CHECKPOINT_INTERVAL = 720
# Rules 3 on, either mode: a block with this many blocks on it is final, whatever the
# weight of a fork (proof of authority is usually final far sooner, by its sealers).
DEFAULT_FINALITY_DEPTH = 100
# Rules 4 on: how long after it closed a row is forgotten (a week: a settled trade can be
# rated or disputed that long), and the shortest and longest a community may choose (an
# hour; ten years).
DEFAULT_FORGET_AFTER_MS = 7 * 24 * 3_600_000
MIN_FORGET_AFTER_MS = 3_600_000
MAX_FORGET_AFTER_MS = 3650 * 24 * 3_600_000

# Every home's transport carries messages of up to 512 KiB (the MQTT link's bound, which the
# community broker enforces too). A block travels inside a sync message inside an envelope,
# so from the latest rules on a block may take the message less room for those two.
TRANSPORT_MESSAGE_BYTES = 512 * 1024
MESSAGE_ROOM_BYTES = 4 * 1024
MAX_BLOCK_BYTES = TRANSPORT_MESSAGE_BYTES - MESSAGE_ROOM_BYTES


@dataclass(frozen=True)
class Consensus:
    """How blocks are sealed and which chain wins.

    `pow`: the seed's proof of work; the sealer searches a nonce until the header hash has
    `bits` leading zero bits, re-targeted every `retarget_window` blocks toward
    `block_interval_ms`; the chain with the most cumulative work wins.
    `poa`: proof of authority; the `sealers` take turns (the in-turn sealer's block weighs
    2, an out-of-turn one 1) and none may seal twice within `len(sealers) // 2` blocks.
    It needs no hashing, which suits a Raspberry Pi.
    """

    mode: ConsensusMode = "poa"
    rules: int = LATEST_RULES
    block_interval_ms: int = 5_000
    sealers: tuple[str, ...] = ()
    initial_bits: int = 12
    min_bits: int = 1
    max_bits: int = 40
    retarget_window: int = 16
    confirmations: int = 6
    # From the latest rules on, a block's bytes on the wire (its canonical JSON); on the
    # first rules, 400 plus its records' bodies and signatures (`Block.size`).
    max_block_bytes: int = MAX_BLOCK_BYTES
    max_block_records: int = 5_000
    max_future_ms: int = 15_000
    min_fee: int = 0
    # Rules 2 on: the stake an account holds for its records to count (see `rules.py`).
    min_balance: int = DEFAULT_MIN_BALANCE
    # Rules 3 on: blocks between checkpoints (0: none) and the depth that makes a block final.
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL
    finality_depth: int = DEFAULT_FINALITY_DEPTH
    # Rules 4 on: chain time after which closed business leaves the state (`forget.py`).
    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS

    def __post_init__(self) -> None:
        if self.rules >= 2 and self.max_block_bytes > MAX_BLOCK_BYTES:
            raise Rejected(
                Reason.OVERSIZE,
                f"genesis.consensus.max_block_bytes: {self.max_block_bytes} is more than "
                f"{MAX_BLOCK_BYTES}, the largest block a {TRANSPORT_MESSAGE_BYTES}-byte "
                "message carries with its envelope; such a block could never be sent",
            )
        if self.rules >= FOURTH_RULES and self.forget_after_ms < MIN_FORGET_AFTER_MS:
            raise Rejected(
                Reason.MALFORMED,
                f"genesis.consensus.forget_after_ms: {self.forget_after_ms} is less than "
                f"{MIN_FORGET_AFTER_MS}, too soon to settle, rate or dispute what closed",
            )
        if self.forget_after_ms > MAX_FORGET_AFTER_MS:
            raise Rejected(
                Reason.MALFORMED,
                f"genesis.consensus.forget_after_ms: {self.forget_after_ms} is more than "
                f"{MAX_FORGET_AFTER_MS} (ten years)",
            )

    @property
    def wire_sized(self) -> bool:
        """Whether `max_block_bytes` counts a block's bytes on the wire (latest rules)."""
        return self.rules >= 2

    @property
    def sequence_jump_limit(self) -> int | None:
        """How far past its highest sequence an account's next record may jump (None: any
        distance, the first rules)."""
        return MAX_SEQUENCE_JUMP if self.rules >= 2 else None


@dataclass(frozen=True)
class Genesis:
    """A community: its name, currency, registrars and consensus parameters."""

    name: str
    currency: str
    time: int
    registrars: tuple[str, ...]
    consensus: Consensus = field(default_factory=Consensus)
    currency_name: str = ""

    @property
    def community_id(self) -> str:
        return hashlib.sha256(canonical_bytes(self.to_json())).hexdigest()[:32]

    def to_json(self) -> dict[str, Any]:
        c = self.consensus
        consensus: dict[str, Any] = {
            "mode": c.mode,
            "block_interval_ms": c.block_interval_ms,
            "confirmations": c.confirmations,
            "max_block_bytes": c.max_block_bytes,
            "max_block_records": c.max_block_records,
            "max_future_ms": c.max_future_ms,
            "min_fee": c.min_fee,
        }
        if c.rules != FIRST_RULES:
            # Absent on the first rules, so the ids of communities founded on them stay.
            consensus["rules"] = c.rules
            if c.min_balance:
                consensus["min_balance"] = c.min_balance
        if c.rules >= THIRD_RULES:
            # Written only when not the default, so a genesis that keeps them keeps its id.
            if c.checkpoint_interval != DEFAULT_CHECKPOINT_INTERVAL:
                consensus["checkpoint_interval"] = c.checkpoint_interval
            if c.finality_depth != DEFAULT_FINALITY_DEPTH:
                consensus["finality_depth"] = c.finality_depth
        if c.rules >= FOURTH_RULES and c.forget_after_ms != DEFAULT_FORGET_AFTER_MS:
            consensus["forget_after_ms"] = c.forget_after_ms
        if c.mode == "poa":
            consensus["sealers"] = list(c.sealers)
        else:
            consensus.update(
                initial_bits=c.initial_bits,
                min_bits=c.min_bits,
                max_bits=c.max_bits,
                retarget_window=c.retarget_window,
            )
        return {
            "name": self.name,
            "currency": self.currency,
            "currency_name": self.currency_name,
            "time": self.time,
            "registrars": list(self.registrars),
            "consensus": consensus,
        }

    @classmethod
    def from_json(cls, data: Any) -> Genesis:
        """Read a genesis object; raise `Rejected(MALFORMED)` naming the bad field."""
        _GENESIS_SHAPE("genesis", data)
        c = data["consensus"]
        defaults = Consensus()
        consensus = Consensus(
            mode=c["mode"],
            rules=c.get("rules", FIRST_RULES),
            block_interval_ms=c["block_interval_ms"],
            sealers=tuple(c.get("sealers", ())),
            initial_bits=c.get("initial_bits", defaults.initial_bits),
            min_bits=c.get("min_bits", defaults.min_bits),
            max_bits=c.get("max_bits", defaults.max_bits),
            retarget_window=c.get("retarget_window", defaults.retarget_window),
            confirmations=c["confirmations"],
            max_block_bytes=c["max_block_bytes"],
            max_block_records=c["max_block_records"],
            max_future_ms=c["max_future_ms"],
            min_fee=c["min_fee"],
            # Absent: no minimum, as before the rule (the first rules never have one).
            min_balance=c.get("min_balance", 0),
            checkpoint_interval=c.get("checkpoint_interval", DEFAULT_CHECKPOINT_INTERVAL),
            finality_depth=c.get("finality_depth", DEFAULT_FINALITY_DEPTH),
            forget_after_ms=c.get("forget_after_ms", DEFAULT_FORGET_AFTER_MS),
        )
        if "min_balance" in c and consensus.rules < 2:
            raise Rejected(
                Reason.MALFORMED, "genesis.consensus.min_balance: a rule of rules 2 and later"
            )
        for name in ("checkpoint_interval", "finality_depth"):
            if name in c and consensus.rules < THIRD_RULES:
                raise Rejected(
                    Reason.MALFORMED, f"genesis.consensus.{name}: a rule of rules 3 and later"
                )
        if "forget_after_ms" in c and consensus.rules < FOURTH_RULES:
            raise Rejected(
                Reason.MALFORMED, "genesis.consensus.forget_after_ms: a rule of rules 4 and later"
            )
        if consensus.mode == "pow" and not (
            consensus.min_bits <= consensus.initial_bits <= consensus.max_bits
        ):
            raise Rejected(
                Reason.MALFORMED, "genesis.consensus: need min_bits <= initial_bits <= max_bits"
            )
        return cls(
            name=data["name"],
            currency=data["currency"],
            currency_name=data.get("currency_name", ""),
            time=data["time"],
            registrars=tuple(data["registrars"]),
            consensus=consensus,
        )

    @classmethod
    def load(cls, path: Path) -> Genesis:
        return cls.from_json(json.loads(path.read_text()))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")


def _keys(max_items: int) -> Any:
    def check(path: str, value: Any) -> list[str]:
        if type(value) is not list or not 1 <= len(value) <= max_items:
            raise Rejected(Reason.MALFORMED, f"{path}: expected 1 to {max_items} public keys")
        for i, item in enumerate(value):
            HEX64(f"{path}[{i}]", item)
        if len(set(value)) != len(value):
            raise Rejected(Reason.MALFORMED, f"{path}: a key is listed twice")
        return value

    return check


_COMMON_CONSENSUS = {
    "mode": one_of(frozenset({"pow", "poa"})),
    "block_interval_ms": integer(100, 3_600_000),
    "confirmations": integer(0, 1000),
    "max_block_bytes": integer(10_000, 64_000_000),
    "max_block_records": integer(1, 1_000_000),
    "max_future_ms": integer(0, 3_600_000),
    "min_fee": integer(0, 10**9),
}
_OPTIONAL_CONSENSUS = {
    "rules": integer(FIRST_RULES, LATEST_RULES),
    "min_balance": integer(0, 10**12),
    "checkpoint_interval": integer(0, 1_000_000),
    "finality_depth": integer(1, 1_000_000),
    "forget_after_ms": integer(MIN_FORGET_AFTER_MS, MAX_FORGET_AFTER_MS),
}
_CONSENSUS_SHAPE = {
    "poa": obj({**_COMMON_CONSENSUS, "sealers": _keys(64)}, _OPTIONAL_CONSENSUS),
    "pow": obj(
        {
            **_COMMON_CONSENSUS,
            "initial_bits": integer(0, 64),
            "min_bits": integer(0, 64),
            "max_bits": integer(0, 64),
            "retarget_window": integer(2, 10_000),
        },
        _OPTIONAL_CONSENSUS,
    ),
}


def _consensus(path: str, value: Any) -> dict[str, Any]:
    if type(value) is not dict or value.get("mode") not in _CONSENSUS_SHAPE:
        raise Rejected(Reason.MALFORMED, f"{path}.mode: expected one of poa, pow")
    checked: dict[str, Any] = _CONSENSUS_SHAPE[value["mode"]](path, value)
    return checked


_GENESIS_SHAPE = obj(
    {
        "name": text(None, 80),
        "currency": text(None, 12),
        "time": integer(0, 2**53),
        "registrars": _keys(32),
        "consensus": _consensus,
    },
    {"currency_name": text(None, 80)},
)

"""Block-level consensus rules for both modes a genesis file may choose.

Proof of work (the seed's scheme): a header is valid when its hash has `difficulty` leading
zero bits; the difficulty re-targets every `retarget_window` blocks toward the configured
block interval. Proof of authority: the sealers named in genesis take turns. In both, the
best chain is the one with the most cumulative work; equal work goes to the lower tip hash
so that every node breaks the tie the same way.

From the latest rules on (`consensus.rules >= 2`), proof of authority adds: finality (a
block on which a majority of the sealers have sealed a later block is final and is never
reorganised away), a minimum spacing between one sealer's blocks (half the block
interval), and the suspension of a sealer whose equivocation is recorded (`rules.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .block import Block, Header, block_message, leading_zero_bits, pow_hash
from .errors import Reason, Rejected
from .genesis import FIRST_RULES, THIRD_RULES, Consensus, Genesis
from .keys import Verifier


def check_block_size(consensus: Consensus, block: Block) -> None:
    """Raise `Rejected(OVERSIZE)` when a block has more records or bytes than genesis allows
    (bytes on the wire from the latest rules on, the first rules' measure before)."""
    size = block.wire_size() if consensus.wire_sized else block.size()
    if len(block.records) > consensus.max_block_records or size > consensus.max_block_bytes:
        raise Rejected(
            Reason.OVERSIZE,
            f"block {block.hash[:12]} has {len(block.records)} records and {size} bytes, "
            f"at most {consensus.max_block_records} and {consensus.max_block_bytes}",
        )


@dataclass(slots=True)
class IndexEntry:
    """What a node remembers of every block header it accepted, on any branch."""

    hash: str
    prev: str
    height: int
    time: int
    difficulty: int
    sealer: str
    work: int
    invalid: str = ""

    def better_than(self, other: IndexEntry) -> bool:
        """Fork choice: more cumulative work wins; equal work goes to the lower hash."""
        if self.work != other.work:
            return self.work > other.work
        return self.hash < other.hash


Ancestor = Callable[[IndexEntry, int], IndexEntry]
"""Given a block and a height at or below it, the block's ancestor at that height."""


def block_work(genesis: Genesis, difficulty: int) -> int:
    if genesis.consensus.mode == "pow":
        return 1 << difficulty
    return difficulty


def expected_difficulty(
    genesis: Genesis, parent: IndexEntry, sealer: str, ancestor: Ancestor
) -> int:
    """The difficulty a block on `parent` sealed by `sealer` must declare."""
    c = genesis.consensus
    height = parent.height + 1
    if c.mode == "poa":
        return 2 if in_turn_sealer(genesis, height) == sealer else 1
    if height < c.retarget_window or height % c.retarget_window:
        return parent.difficulty if parent.height > 0 else c.initial_bits
    first = ancestor(parent, height - c.retarget_window)
    elapsed = parent.time - first.time
    expected = (c.retarget_window - 1) * c.block_interval_ms
    bits = parent.difficulty
    # Whole bits double or halve the work: move one bit only when blocks come at more than
    # twice (or less than half) the intended pace, so the difficulty does not oscillate.
    if elapsed * 2 < expected:
        bits += 1
    elif elapsed > expected * 2:
        bits -= 1
    return max(c.min_bits, min(c.max_bits, bits))


def in_turn_sealer(genesis: Genesis, height: int) -> str:
    sealers = genesis.consensus.sealers
    return sealers[height % len(sealers)]


def recent_sealers(parent: IndexEntry, count: int, ancestor: Ancestor) -> set[str]:
    """Sealers of the last `count` blocks up to and including `parent` (genesis excluded)."""
    found: set[str] = set()
    entry = parent
    for _ in range(count):
        if entry.height == 0:
            break
        found.add(entry.sealer)
        entry = ancestor(entry, entry.height - 1)
    return found


def authority_rules(genesis: Genesis) -> bool:
    """Whether finality, sealer spacing and equivocation evidence apply (latest rules, PoA)."""
    c = genesis.consensus
    return c.mode == "poa" and c.rules > FIRST_RULES


def finality_rules(genesis: Genesis) -> bool:
    """Whether a node keeps a final height it never reorganises below: proof of authority
    on the latest rules (its sealers' majority), and either mode from rules 3 on (depth)."""
    return authority_rules(genesis) or genesis.consensus.rules >= THIRD_RULES


def final_by_depth(genesis: Genesis, head_height: int) -> int:
    """Rules 3 on: the highest block with `finality_depth` blocks on it (0: none)."""
    c = genesis.consensus
    if c.rules < THIRD_RULES:
        return 0
    return max(0, head_height - c.finality_depth)


def sealer_spacing_ms(genesis: Genesis) -> int:
    """The least time between two blocks of one sealer: an honest sealer seals at most once
    a block interval, so half of it leaves room for clocks and still takes a fork of N
    blocks at least N / sealers * spacing of block time to build."""
    return genesis.consensus.block_interval_ms // 2


def finality_quorum(genesis: Genesis) -> int:
    """How many distinct sealers must seal on top of a block for it to be final."""
    return len(genesis.consensus.sealers) // 2 + 1


def sealed_since(parent: IndexEntry, sealer: str, since: int, ancestor: Ancestor) -> int:
    """The time of `sealer`'s latest block at or below `parent` that is later than `since`
    (-1 if none). Block times never decrease along a chain, so the walk stops at `since`."""
    entry = parent
    while entry.height > 0 and entry.time > since:
        if entry.sealer == sealer:
            return entry.time
        entry = ancestor(entry, entry.height - 1)
    return -1


def final_height(head: IndexEntry, quorum: int, ancestor: Ancestor) -> int:
    """The highest block below `head` with `quorum` distinct sealers on later blocks above
    it, on `head`'s chain (0, genesis, when there is none). The walk is as long as it takes
    to meet `quorum` sealers: about `quorum` blocks on a chain whose sealers take turns."""
    seen: set[str] = set()
    entry = head
    while entry.height > 0:
        seen.add(entry.sealer)
        if len(seen) >= quorum:
            return entry.height - 1
        entry = ancestor(entry, entry.height - 1)
    return 0


def may_seal(genesis: Genesis, parent: IndexEntry, sealer: str, ancestor: Ancestor) -> bool:
    """Whether `sealer` may seal the block after `parent` (proof of authority)."""
    c = genesis.consensus
    if c.mode == "pow":
        return True
    if sealer not in c.sealers:
        return False
    return sealer not in recent_sealers(parent, len(c.sealers) // 2, ancestor)


def check_header(
    genesis: Genesis, header: Header, block_hash: str, parent: IndexEntry, ancestor: Ancestor
) -> None:
    """Raise `Rejected` unless the header follows its parent under the community's rules."""
    c = genesis.consensus
    if header.height != parent.height + 1:
        raise Rejected(Reason.BAD_HEIGHT, f"height {header.height} after {parent.height}")
    if header.time < parent.time:
        raise Rejected(Reason.TIME_BEFORE_PARENT, "a block cannot be older than its parent")
    if c.mode == "poa":
        if header.sealer not in c.sealers:
            raise Rejected(Reason.WRONG_SEALER, "the sealer is not a sealer named in genesis")
        if header.sealer in recent_sealers(parent, len(c.sealers) // 2, ancestor):
            raise Rejected(Reason.SEALED_TOO_RECENTLY, "the sealer sealed one of the last blocks")
        if authority_rules(genesis):
            spacing = sealer_spacing_ms(genesis)
            last = sealed_since(parent, header.sealer, header.time - spacing, ancestor)
            if last >= 0:
                raise Rejected(
                    Reason.SEALED_TOO_SOON,
                    f"the sealer's previous block is at {last}; its next may not be before"
                    f" {last + spacing}",
                )
    expected = expected_difficulty(genesis, parent, header.sealer, ancestor)
    if header.difficulty != expected:
        raise Rejected(
            Reason.BAD_DIFFICULTY, f"difficulty {header.difficulty}, expected {expected}"
        )
    if c.mode == "pow":
        digest = bytes.fromhex(block_hash)
        if leading_zero_bits(digest) < header.difficulty:
            raise Rejected(Reason.BAD_PROOF, f"the hash does not meet {header.difficulty} bits")


def proof_is_valid(header: Header) -> bool:
    """Recheck a header's proof of work from scratch (used by `ledger verify`)."""
    return leading_zero_bits(pow_hash(header.pow_prefix(), header.nonce)) >= header.difficulty


def signed_header(header: Header, sig: bytes) -> dict[str, Any]:
    """A header with its sealer's signature, as equivocation evidence quotes it."""
    return {"header": header.to_json(), "sig": sig.hex()}


def check_equivocation(
    genesis: Genesis, first: dict[str, Any], second: dict[str, Any], verifier: Verifier
) -> Header:
    """Raise `Rejected(BAD_EVIDENCE)` unless `first` and `second` (each {header, sig}, shape
    already checked) are two different headers one sealer named in genesis signed at one
    height; returns the first header."""
    one, two = Header.from_json(first["header"]), Header.from_json(second["header"])
    if one.sealer != two.sealer or one.sealer not in genesis.consensus.sealers:
        raise Rejected(Reason.BAD_EVIDENCE, "the headers are not sealed by one sealer of genesis")
    if one.height != two.height or one.height == 0:
        raise Rejected(Reason.BAD_EVIDENCE, "the headers are not at one height above genesis")
    if one.hash == two.hash:
        raise Rejected(Reason.BAD_EVIDENCE, "the two headers are the same block")
    for header, signed in ((one, first), (two, second)):
        sig = bytes.fromhex(signed["sig"])
        if not verifier.verify(header.sealer, sig, block_message(header.hash)):
            raise Rejected(Reason.BAD_EVIDENCE, f"header {header.hash[:12]} is not its sealer's")
    return one

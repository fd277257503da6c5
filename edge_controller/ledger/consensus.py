"""Block-level consensus rules for both modes a genesis file may choose.

Proof of work (the seed's scheme): a header is valid when its hash has `difficulty` leading
zero bits; the difficulty re-targets every `retarget_window` blocks toward the configured
block interval. Proof of authority: the sealers named in genesis take turns. In both, the
best chain is the one with the most cumulative work; equal work goes to the lower tip hash
so that every node breaks the tie the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .block import Block, Header, leading_zero_bits, pow_hash
from .errors import Reason, Rejected
from .genesis import Consensus, Genesis


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

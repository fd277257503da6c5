"""Blocks: a header chained to its parent by hash, and the records it carries."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

from .canonical import canonical_bytes, canonical_bytes_unchecked
from .errors import Reason, Rejected
from .keys import KeyPair, Verifier, account_id
from .records import HEADER_SHAPE, Record, parse_record

BLOCK_VERSION = 1
ZERO_HASH = "0" * 64
BLOCK_SIGNING_DOMAIN = b"energy-p2p/block/v1:"


# A block's JSON form around its header and records: {"header":…,"records":[…],"sig":"…"}.
BLOCK_FRAME_BYTES = len(canonical_bytes({"header": {}, "records": [], "sig": "0" * 128})) - 2


def record_root(record_ids: list[str]) -> str:
    """Merkle root of a block's record ids (Bitcoin's scheme: odd levels repeat the last)."""
    if not record_ids:
        return hashlib.sha256(b"").hexdigest()
    level = [bytes.fromhex(i) for i in record_ids]
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level), 2)]
    return level[0].hex()


@dataclass(frozen=True, slots=True)
class Header:
    """A block header. `difficulty` is the leading zero bits (proof of work) or the
    in-turn weight (proof of authority); `sealer` is the sealing node's public key."""

    height: int
    prev: str
    root: str
    time: int
    difficulty: int
    nonce: int
    sealer: str
    version: int = BLOCK_VERSION
    # The digest of the state this block starts from, at checkpoint heights ("" elsewhere).
    checkpoint: str = ""

    def to_json(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "version": self.version,
            "height": self.height,
            "prev": self.prev,
            "root": self.root,
            "time": self.time,
            "difficulty": self.difficulty,
            "nonce": self.nonce,
            "sealer": self.sealer,
        }
        if self.checkpoint:
            fields["checkpoint"] = self.checkpoint
        return fields

    @classmethod
    def from_json(cls, data: Any) -> Header:
        HEADER_SHAPE("header", data)
        return cls(**data)

    def pow_prefix(self) -> bytes:
        """Digest of everything but the nonce, so the nonce search hashes 40 bytes a try."""
        fields = self.to_json()
        del fields["nonce"]
        return hashlib.sha256(canonical_bytes(fields)).digest()

    @property
    def hash(self) -> str:
        return pow_hash(self.pow_prefix(), self.nonce).hex()

    @property
    def sealer_account(self) -> str:
        return account_id(self.sealer)


def pow_hash(prefix: bytes, nonce: int) -> bytes:
    return hashlib.sha256(prefix + nonce.to_bytes(8, "big")).digest()


def leading_zero_bits(digest: bytes) -> int:
    value = int.from_bytes(digest, "big")
    return len(digest) * 8 - value.bit_length()


@dataclass(frozen=True, slots=True)
class Block:
    """A sealed block: its header, the sealer's signature of the header hash, its records."""

    header: Header
    sig: bytes
    records: tuple[Record, ...]
    hash: str

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def prev(self) -> str:
        return self.header.prev

    def to_wire(self) -> dict[str, Any]:
        return {
            "header": self.header.to_json(),
            "sig": self.sig.hex(),
            "records": [r.to_wire() for r in self.records],
        }

    def size(self) -> int:
        """The first rules' measure of a block: 400 plus its records' bodies and signatures."""
        return 400 + sum(r.size for r in self.records)

    def wire_size(self) -> int:
        """The bytes of this block's canonical JSON form (`to_wire`), exactly: what a
        message carrying it must hold."""
        records = sum(r.wire_size for r in self.records) + max(len(self.records) - 1, 0)
        return BLOCK_FRAME_BYTES + len(canonical_bytes_unchecked(self.header.to_json())) + records

    def check_signature(self, verifier: Verifier) -> None:
        if not verifier.verify(self.header.sealer, self.sig, block_message(self.hash)):
            raise Rejected(Reason.BAD_BLOCK_SIGNATURE, f"block {self.hash[:12]} is not signed")


def wire_size_bound(records: int, record_bytes: int) -> int:
    """The most bytes a block of `records` records whose JSON forms total `record_bytes`
    can take on the wire, whatever its header holds (for sizing a block before sealing)."""
    return BLOCK_FRAME_BYTES + MAX_HEADER_BYTES + record_bytes + max(records - 1, 0)


def block_message(block_hash: str) -> bytes:
    """The bytes a sealer signs: the block hash under the block domain."""
    return BLOCK_SIGNING_DOMAIN + bytes.fromhex(block_hash)


def parse_block(wire: Any, community: str) -> Block:
    """A block from its JSON form; raises `Rejected` for a malformed block or record."""
    if type(wire) is not dict or set(wire) != {"header", "sig", "records"}:
        raise Rejected(Reason.MALFORMED, "block: expected header, sig and records")
    header = Header.from_json(wire["header"])
    sig = wire["sig"]
    if type(sig) is not str or len(sig) != 128:
        raise Rejected(Reason.MALFORMED, "block.sig: expected a 64-byte signature in hex")
    if type(wire["records"]) is not list:
        raise Rejected(Reason.MALFORMED, "block.records: expected a list")
    records = tuple(parse_record(r, community) for r in wire["records"])
    return Block(header=header, sig=bytes.fromhex(sig), records=records, hash=header.hash)


def seal(header: Header, records: tuple[Record, ...], key: KeyPair) -> Block:
    """Sign a finished header (nonce already found, if any) into a block."""
    block_hash = header.hash
    return Block(
        header=header, sig=key.sign(block_message(block_hash)), records=records, hash=block_hash
    )


def search_nonce(header: Header, max_tries: int = 1 << 62, start: int = 0) -> Header | None:
    """Proof of work: find a nonce whose header hash has `header.difficulty` leading zero
    bits; None if `max_tries` nonces from `start` all fail (the caller may try more later)."""
    prefix = header.pow_prefix()
    limit = 1 << (256 - header.difficulty)
    for nonce in range(start, start + max_tries):
        digest = hashlib.sha256(prefix + nonce.to_bytes(8, "big")).digest()
        if int.from_bytes(digest, "big") < limit:
            return replace(header, nonce=nonce)
    return None


# The longest header the shape admits: every number at its bound.
MAX_HEADER_BYTES = len(
    canonical_bytes_unchecked(
        Header(
            height=2**53,
            prev=ZERO_HASH,
            root=ZERO_HASH,
            time=2**53,
            difficulty=256,
            nonce=2**64 - 1,
            sealer=ZERO_HASH,
            checkpoint=ZERO_HASH,
        ).to_json()
    )
)

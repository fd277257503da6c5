"""Ed25519 keys, account ids and signature checking for the ledger."""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ACCOUNT_ID_PREFIX = "ep"
# Twenty bytes of SHA-256, as Ethereum and Bitcoin addresses do: short enough to read and
# type, long enough that no two keys collide in practice.
ACCOUNT_ID_LENGTH = len(ACCOUNT_ID_PREFIX) + 40


def account_id(public_key_hex: str) -> str:
    """The account id that derives from a public key (`ep` + 40 hex characters)."""
    digest = hashlib.sha256(bytes.fromhex(public_key_hex)).hexdigest()
    return ACCOUNT_ID_PREFIX + digest[:40]


@dataclass(frozen=True)
class KeyPair:
    """A node's, a registrar's or a meter's signing key."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> KeyPair:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> KeyPair:
        """A deterministic key from 32 bytes (tests and simulations)."""
        return cls(Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest()))

    @property
    def public_hex(self) -> str:
        return self.private.public_key().public_bytes_raw().hex()

    @property
    def account(self) -> str:
        return account_id(self.public_hex)

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, path: Path) -> None:
        """Write the private key as PEM, readable by its owner only."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.private_pem())

    @classmethod
    def load(cls, path: Path) -> KeyPair:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"{path} does not hold an Ed25519 private key")
        return cls(key)


class Verifier:
    """Checks Ed25519 signatures, caching parsed public keys and recent good signatures.

    A node sees most records twice (gossiped, then again inside a block), so remembering
    which (key, message, signature) triples already verified halves the work, as Bitcoin
    Core's signature cache does.
    """

    def __init__(self, cache_size: int = 50_000) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size

    def public_key(self, public_hex: str) -> Ed25519PublicKey:
        key = self._keys.get(public_hex)
        if key is None:
            raw = bytes.fromhex(public_hex)
            if len(raw) != 32:
                raise ValueError("an Ed25519 public key is 32 bytes")
            key = Ed25519PublicKey.from_public_bytes(raw)
            if len(self._keys) > 100_000:
                self._keys.clear()
            self._keys[public_hex] = key
        return key

    def verify(self, public_hex: str, signature: bytes, message: bytes) -> bool:
        """True when `signature` is `public_hex`'s signature of `message`."""
        if self._cache_size and self.is_known_good(public_hex, signature, message):
            return True
        try:
            self.public_key(public_hex).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        if self._cache_size:
            self.remember_good(public_hex, signature, message)
        return True

    @staticmethod
    def _cache_key(public_hex: str, signature: bytes, message: bytes) -> bytes:
        # The key is part of the cache entry: a signature is only good for its own key.
        return hashlib.sha256(public_hex.encode() + signature + message).digest()

    def is_known_good(self, public_hex: str, signature: bytes, message: bytes) -> bool:
        return self._cache_key(public_hex, signature, message) in self._good

    def remember_good(self, public_hex: str, signature: bytes, message: bytes) -> None:
        """Note a signature verified elsewhere (a worker process) as good."""
        self._good[self._cache_key(public_hex, signature, message)] = None
        if len(self._good) > self._cache_size:
            self._good.popitem(last=False)

    def forget(self) -> None:
        """Drop cached results, so the next checks really verify (e.g. `ledger verify`)."""
        self._good.clear()

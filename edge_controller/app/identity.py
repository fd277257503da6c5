"""A home's keys and API token on disk, created on first start."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from edge_controller.ledger import KeyPair

log = logging.getLogger(__name__)


def load_or_create_key(path: Path) -> KeyPair:
    """The key at `path`, generated (mode 0600) on first start."""
    if path.exists():
        return KeyPair.load(path)
    key = KeyPair.generate()
    key.save(path)
    log.info("created a new key %s (account %s)", path, key.account)
    return key


def load_or_create_token(path: Path) -> str:
    """The API bearer token at `path`, generated on first start (32 random bytes)."""
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token

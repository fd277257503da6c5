"""A home's keys and API token on disk, created on first start."""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

from edge_controller.ledger import KeyPair, private_file

log = logging.getLogger(__name__)


# Made 0600 before they are opened: the outbox's room (network/) has no file helper;
# the ledger store, the refused list and USB charging make their files 0600 themselves.
DATABASES = ("ledger.sqlite3", "outbox.sqlite3")


def secure_data_dir(data_dir: Path) -> None:
    """Create `data_dir` readable by its owner only (0700), and make its databases and
    the WAL files SQLite keeps beside them 0600, created empty when missing (SQLite gives
    its WAL files the database's mode). An older install's wider modes are narrowed."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(0o700)
    for name in DATABASES:
        private_file(data_dir / name)
    for path in data_dir.iterdir():
        if path.is_file() and path.stat().st_mode & 0o077:
            path.chmod(0o600)
        elif path.is_dir() and path.stat().st_mode & 0o077:
            path.chmod(0o700)


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

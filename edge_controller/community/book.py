"""The registrar's book: the invitations it issued, the membership requests waiting for a
decision, the homes' broker logins, kept in the registrar's folder.

Layout of a community folder (`energy-p2p-edge community found --out DIR`):

    DIR/genesis.json              the community (give it to nobody by hand: invitations carry it)
    DIR/registrar/registrar.key   the registrar's key (0600)
    DIR/registrar/book.json       this book
    DIR/registrar/invitations/    each invitation as .json, .txt and .png
    DIR/broker/                   the community broker: mosquitto.conf, CA, certificate,
                                  password file, ACL
    DIR/home/                     the founder's own home (edge.yaml, keys, genesis)

The command line (`invite`) and the registrar's edge controller (requests arriving,
approvals) both change the book, so every change holds an exclusive lock on `book.lock`
and writes the whole book atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_controller.community.broker import ACL_FILE, PASSWD_FILE, PID_FILE, Login, acl_text
from edge_controller.community.errors import CommunityError, Problem
from edge_controller.community.files import write_private

BOOK_FILE = "book.json"
REGISTRAR_KEY = "registrar.key"
# The registrar's inbox: at most this many requests wait for a decision; more are refused
# (`inbox_full`) until the registrar approves or denies some.
MAX_PENDING = 64


@dataclass
class Book:
    """What the registrar knows beyond the ledger; a plain JSON document on disk."""

    community: str
    broker_host: str
    broker_port: int
    invitations: dict[str, dict[str, Any]] = field(default_factory=dict)
    pending: dict[str, dict[str, Any]] = field(default_factory=dict)
    logins: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Each login's line of the broker's password file (a salted hash, never the password).
    passwords: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "community": self.community,
            "broker": {"host": self.broker_host, "port": self.broker_port},
            "invitations": self.invitations,
            "pending": self.pending,
            "logins": self.logins,
            "passwords": self.passwords,
        }

    def expired(self, invitation_id: str, now: int) -> bool:
        """Whether an invitation is past its expiry. The founder's own never is: `found`
        joins with it at once and deletes its files, so it never leaves the founder's
        folder, and the founder may start the home days later."""
        invitation = self.invitations[invitation_id]
        founders = bool(self.logins.get(invitation["login"], {}).get("registrar"))
        return not founders and invitation["expires"] <= now

    def closable(self, now: int) -> list[dict[str, Any]]:
        """The invitations that can no longer bring a home in, yet whose login still has a
        password: denied, or expired with no request of theirs waiting (a waiting one keeps
        its login until the registrar decides)."""
        return [
            invitation
            for invitation_id, invitation in self.invitations.items()
            if invitation["login"] in self.passwords
            and (
                invitation["state"] == "denied"
                or (
                    invitation["state"] == "issued"
                    and self.expired(invitation_id, now)
                    and invitation_id not in self.pending
                )
            )
        ]

    def close_logins(self, now: int) -> bool:
        """Take the password line of each `closable` invitation's login (an expired one is
        marked so): the invitation, wherever it travelled, then opens nothing on the broker.
        True when one went, so the broker's files are due."""
        closable = self.closable(now)
        for invitation in closable:
            if invitation["state"] == "issued":
                invitation["state"] = "expired"
            del self.passwords[invitation["login"]]
        return bool(closable)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Book:
        return cls(
            community=data["community"],
            broker_host=data["broker"]["host"],
            broker_port=data["broker"]["port"],
            invitations=data["invitations"],
            pending=data["pending"],
            logins=data["logins"],
            passwords=data["passwords"],
        )


class Registry:
    """The registrar's folder: its book under a lock, and the broker files it keeps."""

    def __init__(self, folder: Path, broker_dir: Path | None = None) -> None:
        self.folder = folder
        self.broker_dir = broker_dir or folder.parent / "broker"

    @property
    def key_file(self) -> Path:
        return self.folder / REGISTRAR_KEY

    @contextlib.contextmanager
    def locked(self) -> Iterator[Book]:
        """The book, locked; saved when the block ends without an error."""
        with open(self.folder / "book.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                book = self.read()
                yield book
                self.save(book)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> Book:
        path = self.folder / BOOK_FILE
        try:
            return Book.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CommunityError(
                Problem.NOT_REGISTRAR, f"{path} is not a registrar's book ({exc})"
            ) from None

    def save(self, book: Book) -> None:
        write_private(self.folder / BOOK_FILE, json.dumps(book.to_json(), indent=2) + "\n")

    def write_broker_files(self, book: Book) -> None:
        """The password file and ACL from the book's logins (when this registrar keeps the
        broker's folder), then ask a running broker to read them again."""
        if not self.broker_dir.is_dir():
            return
        lines = "".join(line + "\n" for line in book.passwords.values())
        write_private(self.broker_dir / PASSWD_FILE, lines)
        logins = [
            Login(user, bool(info.get("registrar")), info.get("node_id", ""))
            for user, info in book.logins.items()
        ]
        write_private(self.broker_dir / ACL_FILE, acl_text(book.community, logins))
        self.reload_broker()

    def reload_broker(self) -> bool:
        """SIGHUP the broker named by the pid file its configuration writes (it reads its
        password file and ACL again); False when none runs here."""
        try:
            pid = int((self.broker_dir / PID_FILE).read_text().strip())
            os.kill(pid, signal.SIGHUP)
        except (OSError, ValueError):
            return False
        return True

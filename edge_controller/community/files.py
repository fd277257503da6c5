"""Writing the community's files all or nothing: each file is written beside its place and
renamed over it, so a crash or a full disk never leaves half a file, and a group of files is
written only once every one of them could be."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def _write(path: Path, data: bytes, mode: int) -> None:
    temporary = path.with_name(f".{path.name}.new")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_private(path: Path, data: bytes | str) -> None:
    """Write a file only its owner may read (keys, passwords), atomically."""
    _write(path, data.encode() if isinstance(data, str) else data, 0o600)


def write_public(path: Path, data: bytes | str) -> None:
    """Write a file others may read (certificates, genesis), atomically."""
    _write(path, data.encode() if isinstance(data, str) else data, 0o644)


class FileGroup:
    """Files staged together and put in place together: `commit` renames each staged file
    over its place; `rollback` (or leaving the `with` block on an error) removes every
    staged file and every file `created` named, so a failed step leaves nothing behind."""

    def __init__(self) -> None:
        self.staged: list[tuple[Path, Path]] = []
        self.created: list[Path] = []

    def stage(self, path: Path, data: bytes | str, private: bool = False) -> None:
        """Write `data` beside `path`, to be renamed over it on `commit`."""
        temporary = path.with_name(f".{path.name}.staged")
        (write_private if private else write_public)(temporary, data)
        self.staged.append((temporary, path))

    def commit(self) -> None:
        for temporary, path in self.staged:
            os.replace(temporary, path)
        self.staged.clear()
        self.created.clear()

    def rollback(self) -> None:
        for temporary, _ in self.staged:
            with contextlib.suppress(OSError):
                temporary.unlink()
        for path in self.created:
            with contextlib.suppress(OSError):
                path.unlink()
        self.staged.clear()
        self.created.clear()

    def __enter__(self) -> FileGroup:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is not None:
            self.rollback()

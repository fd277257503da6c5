"""Canonical JSON: the one byte encoding every signature and hash in the ledger covers.

The subset of RFC 8785 the product's contract names: objects with sorted keys, no
whitespace, UTF-8, and integers only (floats would make two nodes disagree on bytes).
"""

from __future__ import annotations

import json
from typing import Any

# Python's json module already sorts keys and escapes like RFC 8785 for the value types we
# allow; what it cannot do is refuse floats, so `check_canonical_value` does that first.
_encoder = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)

MAX_INT = 2**63 - 1


class CanonicalError(ValueError):
    """The value cannot be encoded canonically (a float, a non-string key, ...)."""


def check_canonical_value(value: Any, path: str = "$") -> None:
    """Raise `CanonicalError` naming the path of the first value canonical JSON forbids."""
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not -MAX_INT <= value <= MAX_INT:
            raise CanonicalError(f"{path}: integer out of the signed 64-bit range")
        return
    if isinstance(value, float):
        raise CanonicalError(f"{path}: floats are not allowed in signed data")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_canonical_value(item, f"{path}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise CanonicalError(f"{path}: object keys must be strings")
            check_canonical_value(item, f"{path}.{key}")
        return
    raise CanonicalError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_bytes(value: Any) -> bytes:
    """Encode `value` as canonical JSON bytes, refusing anything outside the subset."""
    check_canonical_value(value)
    return _encoder.encode(value).encode()


def canonical_bytes_unchecked(value: Any) -> bytes:
    """Encode a value already known to hold only canonical types (hot paths)."""
    return _encoder.encode(value).encode()

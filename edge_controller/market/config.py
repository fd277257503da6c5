"""Plain-data round trip for the market's frozen dataclasses, with field paths in errors.

The owner's policy travels as JSON (`GET`/`PUT /api/v1/policy`) and offer/request bodies
arrive from the ledger, so every mistake is reported with its path, e.g.
`sell.battery.disable_soc_percent: must not be above enable_soc_percent (80)`.
Each dataclass checks its own values in `__post_init__` (paths relative to itself);
`from_dict` prefixes them with where the object sits in the document.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (`path`) and what was expected (`message`)."""

    path: str
    message: str


class ValidationError(ValueError):
    """A document or value that breaks the rules; `problems` lists every mistake found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{p.path}: {p.message}" for p in self.problems))

    def to_dict(self) -> dict[str, object]:
        """The problems as JSON-ready data for an API error body."""
        return {"problems": [{"path": p.path, "message": p.message} for p in self.problems]}


class Checks:
    """Collects problems while a dataclass validates itself, then raises them all at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def require(self, condition: bool, path: str, message: str) -> None:
        """Record a problem at `path` unless `condition` holds."""
        if not condition:
            self.problems.append(Problem(path, message))

    def done(self) -> None:
        """Raise a ValidationError if anything was recorded."""
        if self.problems:
            raise ValidationError(self.problems)


def join_path(parent: str, child: str) -> str:
    """`parent.child`, or `child` at the top of a document."""
    return f"{parent}.{child}" if parent else child


class _Invalid:
    """Marks a value that could not be read; its problems are already recorded."""


_INVALID = _Invalid()


def from_dict(cls: type[T], data: object, path: str = "") -> T:
    """Build `cls` (a frozen dataclass) from JSON-like data or raise ValidationError.

    Unknown fields are mistakes, missing fields take their defaults, and a field that is a
    union of dataclasses is chosen by the `kind` key (the class's `KIND`).
    """
    problems: list[Problem] = []
    value = _read(cls, data, path, problems)
    if problems or isinstance(value, _Invalid):
        raise ValidationError(problems)
    return cast(T, value)


def to_dict(value: object) -> dict[str, object]:
    """JSON-ready data for a dataclass, the inverse of `from_dict`."""
    dumped = _dump(value)
    if not isinstance(dumped, dict):
        raise TypeError(f"{type(value).__name__} is not a dataclass")
    return dumped


def _dump(value: object) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, object] = {}
        kind = getattr(type(value), "KIND", None)
        if kind is not None:
            out["kind"] = kind
        for field in dataclasses.fields(value):
            out[field.name] = _dump(getattr(value, field.name))
        return out
    if isinstance(value, tuple | list):
        return [_dump(item) for item in value]
    return value


def _read(tp: Any, data: object, path: str, problems: list[Problem]) -> object:
    origin = get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return _read_union(get_args(tp), data, path, problems)
    if origin is Literal:
        choices = get_args(tp)
        if data in choices and type(data) in {type(c) for c in choices}:
            return data
        problems.append(Problem(path, f"expected one of {', '.join(map(repr, choices))}"))
        return _INVALID
    if origin is tuple:
        return _read_tuple(get_args(tp)[0], data, path, problems)
    if tp is bool:
        return _read_scalar(bool, "true or false", data, path, problems)
    if tp is int:
        # bool is an int in Python, but `true` is never a quantity.
        if isinstance(data, bool):
            problems.append(Problem(path, "expected an integer"))
            return _INVALID
        return _read_scalar(int, "an integer", data, path, problems)
    if tp is str:
        return _read_scalar(str, "a string", data, path, problems)
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, data, path, problems)
    raise TypeError(f"{path}: unsupported field type {tp!r}")


def _read_scalar(
    kind: type[object], expected: str, data: object, path: str, problems: list[Problem]
) -> object:
    if isinstance(data, kind):
        return data
    problems.append(Problem(path, f"expected {expected}"))
    return _INVALID


def _read_union(
    choices: tuple[Any, ...], data: object, path: str, problems: list[Problem]
) -> object:
    if data is None and type(None) in choices:
        return None
    options = [c for c in choices if c is not type(None)]
    if len(options) == 1:
        return _read(options[0], data, path, problems)
    by_kind = {getattr(option, "KIND", None): option for option in options}
    if not isinstance(data, Mapping):
        problems.append(Problem(path, "expected an object with a 'kind'"))
        return _INVALID
    kind = data.get("kind")
    if kind not in by_kind or kind is None:
        kinds = ", ".join(repr(k) for k in by_kind if k is not None)
        problems.append(Problem(join_path(path, "kind"), f"expected one of {kinds}"))
        return _INVALID
    return _read_dataclass(by_kind[kind], data, path, problems)


def _read_tuple(item_type: Any, data: object, path: str, problems: list[Problem]) -> object:
    if not isinstance(data, list | tuple):
        problems.append(Problem(path, "expected a list"))
        return _INVALID
    items = [_read(item_type, item, f"{path}[{i}]", problems) for i, item in enumerate(data)]
    if any(isinstance(item, _Invalid) for item in items):
        return _INVALID
    return tuple(items)


def _read_dataclass(cls: Any, data: object, path: str, problems: list[Problem]) -> object:
    if not isinstance(data, Mapping):
        problems.append(Problem(path, "expected an object"))
        return _INVALID
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    allowed = set(fields) | ({"kind"} if getattr(cls, "KIND", None) is not None else set())
    for key in data:
        if key not in allowed:
            problems.append(Problem(join_path(path, str(key)), "unknown field"))
    kwargs: dict[str, object] = {}
    complete = True
    for name, field in fields.items():
        if name in data:
            value = _read(hints[name], data[name], join_path(path, name), problems)
            if isinstance(value, _Invalid):
                complete = False
            else:
                kwargs[name] = value
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            problems.append(Problem(join_path(path, name), "required"))
            complete = False
    if not complete:
        return _INVALID
    try:
        return cls(**kwargs)
    except ValidationError as error:
        problems.extend(Problem(join_path(path, p.path), p.message) for p in error.problems)
        return _INVALID

"""One way to check input: a document (parsed JSON or YAML) read into frozen dataclasses.

The configuration file, the market policy (`GET`/`PUT /api/v1/policy`), offer and request
bodies from the ledger, API request bodies and device profiles are all declared as frozen
dataclasses and read by `from_dict`, which reports every mistake at once, each with its
path, e.g. `sell.battery.disable_soc_percent: must not be above enable_soc_percent (80)`.

- Types: bool, int, float, str, Literal, enums, `tuple[X, ...]`, `list[X]`, `dict[K, V]`,
  `X | None`, `Any`, dataclasses, and unions of dataclasses told apart by a tag key (the
  class's `TAG_FIELD`, `kind` unless said otherwise, whose value is the class's `KIND`).
- Limits as `Annotated` metadata: `Between`, `NonEmpty`, `OneOf`, `Check` (a function of
  the value), and `Expect` (what to say when the type is wrong).
- Each dataclass checks its own values in `__post_init__` with `Checks` (paths relative to
  itself); `from_dict` prefixes them with where the object sits in the document.

It lives in `market/` because the market, the lowest layer that reads documents, may import
nothing else of the project; everything above it imports it from here.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import (
    Annotated,
    Any,
    Literal,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a document: where (`path`) and what was expected (`message`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(top level)'}: {self.message}"


class ValidationError(ValueError):
    """A document or value that breaks the rules; `problems` lists every mistake found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(str(p) for p in self.problems))

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


REQUIRED = "required"


# --- limits, written as Annotated[type, limit, ...] -----------------------------------------


@dataclass(frozen=True)
class Between:
    """A number from `low` to `high`, both included."""

    low: int
    high: int


@dataclass(frozen=True)
class NonEmpty:
    """A text that is not empty."""


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of texts (or numbers), listed in the message in this order."""

    choices: tuple[object, ...]


@dataclass(frozen=True)
class Expect:
    """What the message says is expected when the value has the wrong type."""

    what: str


@dataclass(frozen=True)
class Check:
    """A check of the whole value: `test(value)` yields (relative path, message) pairs."""

    test: Callable[[Any], Iterable[tuple[str, str]]]


# --- reading --------------------------------------------------------------------------------


class _Invalid:
    """Marks a value that could not be read; its problems are already recorded."""


_INVALID = _Invalid()


def from_dict(cls: type[T], data: object, path: str = "") -> T:
    """Build `cls` (a frozen dataclass) from JSON-like data or raise ValidationError.

    Unknown fields are mistakes (unless the class sets `IGNORE_UNKNOWN`), missing fields
    take their defaults, and a union of dataclasses is chosen by its tag key.
    """
    return cast(T, read(cls, data, path))


def read(tp: Any, data: object, path: str = "") -> Any:
    """Read `data` as the type `tp` (any type `from_dict` knows) or raise ValidationError."""
    problems: list[Problem] = []
    value = _read(tp, data, path, problems)
    if problems or isinstance(value, _Invalid):
        raise ValidationError(problems)
    return value


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
            out[_tag_field(type(value))] = kind
        for field in dataclasses.fields(value):
            out[field.name] = _dump(getattr(value, field.name))
        return out
    if isinstance(value, tuple | list):
        return [_dump(item) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _dump(item) for key, item in value.items()}
    return value


def _tag_field(cls: Any) -> str:
    return str(getattr(cls, "TAG_FIELD", "kind"))


def _choices(values: Iterable[object]) -> str:
    return ", ".join(str(v.value if isinstance(v, enum.Enum) else v) for v in values)


def _read(tp: Any, data: object, path: str, problems: list[Problem]) -> object:
    origin = get_origin(tp)
    if origin is Annotated:
        return _read_annotated(tp, data, path, problems)
    if origin is Union or origin is types.UnionType:
        return _read_union(get_args(tp), data, path, problems)
    if tp is Any:
        return data
    if origin is Literal:
        # `type(data)` as well: `True == 1`, yet `true` is not the literal 1.
        return data if _is_one_of(data, get_args(tp)) else _fail(problems, path, _expected(tp))
    if origin is tuple or origin is list:
        return _read_sequence(tp, data, path, problems)
    if origin is dict or origin is Mapping:
        return _read_mapping(tp, data, path, problems)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            return _fail(problems, path, _expected(tp))
    if tp is bool:
        return data if isinstance(data, bool) else _fail(problems, path, _expected(tp))
    if tp is int:
        # bool is an int in Python, but `true` is never a quantity.
        ok = isinstance(data, int) and not isinstance(data, bool)
        return data if ok else _fail(problems, path, _expected(tp))
    if tp is float:
        ok = isinstance(data, int | float) and not isinstance(data, bool)
        return float(cast(float, data)) if ok else _fail(problems, path, _expected(tp))
    if tp is str:
        return data if isinstance(data, str) else _fail(problems, path, _expected(tp))
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, data, path, problems)
    raise TypeError(f"{path}: unsupported field type {tp!r}")


def _is_one_of(data: object, choices: tuple[object, ...]) -> bool:
    try:
        return data in choices and type(data) in {type(c) for c in choices}
    except TypeError:  # an unhashable value compared with a set of choices
        return False


def _fail(problems: list[Problem], path: str, expected: str) -> _Invalid:
    problems.append(Problem(path, f"expected {expected}"))
    return _INVALID


def _expected(tp: Any) -> str:
    """What a value of type `tp` looks like, in the words of an error message."""
    origin = get_origin(tp)
    if origin is Annotated:
        args = get_args(tp)
        for limit in args[1:]:
            if isinstance(limit, Expect):
                return limit.what
            if isinstance(limit, Between):
                number = "a number" if args[0] is float else "an integer"
                return f"{number} from {limit.low} to {limit.high}"
            if isinstance(limit, OneOf):
                return f"one of {_choices(limit.choices)}"
            if isinstance(limit, NonEmpty):
                return "a non-empty text"
        return _expected(args[0])
    if origin is Union or origin is types.UnionType:
        options = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_expected(a) for a in options)
    if origin is Literal:
        return f"one of {_choices(get_args(tp))}"
    if origin is tuple or origin is list:
        return "a list"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"one of {_choices(tp)}"
    simple = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}
    if tp in simple:
        return simple[tp]
    return "a mapping"


def _read_annotated(tp: Any, data: object, path: str, problems: list[Problem]) -> object:
    inner, *limits = get_args(tp)
    if get_origin(inner) in (Union, types.UnionType):
        value = _read_union(get_args(inner), data, path, problems, tp)
    else:
        scratch: list[Problem] = []
        value = _read(inner, data, path, scratch)
        # A wrong type is said once, in the words of the limits (e.g. the range).
        if any(p.path == path for p in scratch):
            problems.extend(p for p in scratch if p.path != path)
            return _fail(problems, path, _expected(tp))
        problems.extend(scratch)
    if isinstance(value, _Invalid):
        return value
    for limit in limits:
        if isinstance(limit, Check):
            found = [Problem(_under(path, p), m) for p, m in limit.test(value)]
            if found:
                problems.extend(found)
                return _INVALID
        elif not _within(limit, value):
            return _fail(problems, path, _expected(tp))
    return value


def _under(path: str, relative: str) -> str:
    """`relative` (a field, `[i].field`, or nothing for the value itself) below `path`."""
    if not relative:
        return path
    return path + relative if relative.startswith("[") else join_path(path, relative)


def _within(limit: object, value: object) -> bool:
    if isinstance(limit, Between):
        return limit.low <= cast(int, value) <= limit.high
    if isinstance(limit, NonEmpty):
        return bool(value)
    if isinstance(limit, OneOf):
        return _is_one_of(value, limit.choices)
    return True


def _read_union(
    choices: tuple[Any, ...],
    data: object,
    path: str,
    problems: list[Problem],
    annotated: Any = None,
) -> object:
    if data is None and type(None) in choices:
        return None
    options, tagged = _union_plan(choices)
    if len(options) == 1:
        if annotated is None:
            return _read(options[0], data, path, problems)
        found: list[Problem] = []
        value = _read(options[0], data, path, found)
        # A wrong type is said in the words the annotation gives (`Expect`), as for any field.
        if any(p.path == path for p in found):
            problems.extend(p for p in found if p.path != path)
            return _fail(problems, path, _expected(annotated))
        problems.extend(found)
        return value
    if len(tagged) > 1:
        return _read_tagged(tagged, data, path, problems)
    for option in options:
        scratch: list[Problem] = []
        value = _read(option, data, path, scratch)
        if not scratch and not isinstance(value, _Invalid):
            return value
        # A mapping given for the one dataclass choice: its own mistakes say the most.
        if isinstance(data, Mapping) and dataclasses.is_dataclass(option):
            problems.extend(scratch)
            return _INVALID
    if annotated is not None:
        return _fail(problems, path, _expected(annotated))
    return _fail(problems, path, _expected(Union[tuple(options)]))  # noqa: UP007


@functools.cache
def _union_plan(choices: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """A union's choices other than None, and those of them that are dataclasses."""
    options = tuple(c for c in choices if c is not type(None))
    return options, tuple(o for o in options if dataclasses.is_dataclass(o))


def _read_tagged(
    options: tuple[Any, ...], data: object, path: str, problems: list[Problem]
) -> object:
    tag = _tag_field(options[0])
    by_kind = {getattr(option, "KIND", None): option for option in options}
    if not isinstance(data, Mapping):
        return _fail(problems, path, f"a mapping with a '{tag}'")
    kind = data.get(tag)
    if not isinstance(kind, str) or kind not in by_kind:
        kinds = _choices(k for k in by_kind if k is not None)
        return _fail(problems, join_path(path, tag), f"one of {kinds}")
    return _read_dataclass(by_kind[kind], data, path, problems)


def _read_sequence(tp: Any, data: object, path: str, problems: list[Problem]) -> object:
    if not isinstance(data, list | tuple):
        return _fail(problems, path, "a list")
    item_type = get_args(tp)[0]
    items = [_read(item_type, item, f"{path}[{i}]", problems) for i, item in enumerate(data)]
    if any(isinstance(item, _Invalid) for item in items):
        return _INVALID
    return list(items) if get_origin(tp) is list else tuple(items)


def _read_mapping(tp: Any, data: object, path: str, problems: list[Problem]) -> object:
    if not isinstance(data, Mapping):
        return _fail(problems, path, "a mapping")
    key_type, value_type = get_args(tp)
    out: dict[object, object] = {}
    complete = True
    for name, item in data.items():
        where = join_path(path, str(name))
        key = _read_key(key_type, name, where, problems)
        value = _read(value_type, item, where, problems)
        if isinstance(key, _Invalid) or isinstance(value, _Invalid):
            complete = False
        else:
            out[key] = value
    return out if complete else _INVALID


def _read_key(tp: Any, name: object, where: str, problems: list[Problem]) -> object:
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(name)
        except ValueError:
            message = f"unknown name {name!r}; expected one of {_choices(tp)}"
            problems.append(Problem(where, message))
            return _INVALID
    return _read(tp, name, where, problems)


@dataclass(frozen=True)
class _Shape:
    """What `_read_dataclass` needs of a class, worked out once (type hints are slow)."""

    hints: Mapping[str, Any]
    required: frozenset[str]
    allowed: frozenset[str]
    ignore_unknown: bool
    none_is_empty: bool


_SHAPES: dict[type, _Shape] = {}


def _shape(cls: type) -> _Shape:
    shape = _SHAPES.get(cls)
    if shape is None:
        fields = [f for f in dataclasses.fields(cls) if f.init]
        hints = get_type_hints(cls, include_extras=True)
        names = frozenset(f.name for f in fields)
        tag = {_tag_field(cls)} if getattr(cls, "KIND", None) is not None else set()
        shape = _Shape(
            hints={f.name: hints[f.name] for f in fields},  # in the order written
            required=frozenset(
                f.name
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            ),
            allowed=names | tag,
            ignore_unknown=bool(getattr(cls, "IGNORE_UNKNOWN", False)),
            none_is_empty=bool(getattr(cls, "NONE_IS_EMPTY", False)),
        )
        _SHAPES[cls] = shape
    return shape


def _read_dataclass(cls: Any, data: object, path: str, problems: list[Problem]) -> object:
    shape = _shape(cls)
    if data is None and shape.none_is_empty:
        data = {}  # a YAML section with nothing under it
    if not isinstance(data, Mapping):
        return _fail(problems, path, "a mapping")
    if not shape.ignore_unknown:
        for key in data:
            if key not in shape.allowed:
                known = ", ".join(sorted(shape.allowed))
                problems.append(
                    Problem(join_path(path, str(key)), f"unknown field; expected one of {known}")
                )
    kwargs: dict[str, object] = {}
    complete = True
    for name, hint in shape.hints.items():
        if name in data:
            value = _read(hint, data[name], join_path(path, name), problems)
            if isinstance(value, _Invalid):
                complete = False
            else:
                kwargs[name] = value
        elif name in shape.required:
            problems.append(Problem(join_path(path, name), REQUIRED))
            complete = False
    if not complete:
        return _INVALID
    try:
        return cls(**kwargs)
    except ValidationError as error:
        problems.extend(Problem(join_path(path, p.path), p.message) for p in error.problems)
        return _INVALID

"""How to check input: msgspec, pydantic v2 or one shared hand-written checker, measured.

    PYTHONPATH=. python scripts/bench_input.py [--calls 20000]

For each candidate it prints the import time and the resident memory the import adds (each
in a fresh interpreter, schemas built, median of 5), the time per check of the sample
`deploy/edge.yaml`, of a market policy document and of a `POST /api/v1/offers` body, and how
many of the mistakes in a document with several of them the candidate reports, with paths.
The library schemas mirror the project's (same fields, types, defaults and tags), so each
candidate does the same work; a library that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

ROOT = Path(__file__).resolve().parents[1]
CANDIDATES = ("handwritten", "msgspec", "pydantic")

OFFER_BODY = {
    "resource": "alice/battery",
    "mode": "energy",
    "quantity": 1500,
    "price": 280,
    "start": 1_800_000_000_000,
    "end": 1_800_003_600_000,
    "to": ["home-b"],
}
# The mistakes of tests/market/test_policy_document.py: seven, in six places.
BAD_POLICY = {
    "sell": {
        "pv": {"enable_surplus_w": "lots"},
        "pricing": {"kind": "auction"},
        "delivery_window_ms": 1.5,
        "colour": "green",
    },
    "buy": {"max_price": True, "energy": {"min": 500, "max": 100}},
    "bidding": {"increment": 0},
}
BAD_POLICY_PATHS = 7


def sample_config(folder: Path) -> dict[str, Any]:
    """deploy/edge.yaml with its files pointed at `folder` (they must exist)."""
    document: dict[str, Any] = yaml.safe_load((ROOT / "deploy" / "edge.yaml").read_text())
    (folder / "genesis.json").write_text("{}")
    (folder / "password").write_text("s3cret\n")
    document["genesis"] = str(folder / "genesis.json")
    document["data_dir"] = str(folder / "data")
    document["community_broker"]["password_file"] = str(folder / "password")
    return document


# --- the schemas each library needs: generated from the market's dataclasses ---------------


def _tagged_union(tp: Any) -> tuple[Any, ...] | None:
    """The members of a union of two or more dataclasses (told apart by `kind`), else None."""
    if get_origin(tp) not in (Union, types.UnionType):
        return None
    members = tuple(a for a in get_args(tp) if dataclasses.is_dataclass(a))
    return members if len(members) > 1 else None


def msgspec_schema(root: type) -> Any:
    """msgspec Structs mirroring the dataclass tree under `root` (tag `kind` for unions)."""
    import msgspec

    made: dict[type, Any] = {}

    def convert(tp: Any) -> Any:
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return struct(tp)
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            return Union[tuple(convert(a) for a in get_args(tp))]  # noqa: UP007
        if origin is tuple:
            return tuple[convert(get_args(tp)[0]), ...]  # type: ignore[misc]
        return tp

    def struct(cls: type) -> Any:
        if cls not in made:
            hints = get_type_hints(cls)
            fields = []
            for f in dataclasses.fields(cls):
                if f.default is not dataclasses.MISSING:
                    default = f.default
                    if dataclasses.is_dataclass(default):
                        default = msgspec.convert(
                            dataclasses.asdict(default), convert(type(default))
                        )
                    fields.append((f.name, convert(hints[f.name]), default))
                elif f.default_factory is not dataclasses.MISSING:
                    factory = f.default_factory
                    kind = convert(factory) if dataclasses.is_dataclass(factory) else None
                    fields.append(
                        (
                            f.name,
                            convert(hints[f.name]),
                            msgspec.field(default_factory=kind or factory),
                        )
                    )
                else:
                    fields.append((f.name, convert(hints[f.name])))
            fields.sort(key=lambda f: len(f) > 2)
            tag = getattr(cls, "KIND", None)
            made[cls] = msgspec.defstruct(
                cls.__name__,
                fields,
                forbid_unknown_fields=True,
                frozen=True,
                tag_field="kind" if tag else None,
                tag=tag or None,
            )
        return made[cls]

    return convert(root)


def pydantic_schema(root: type) -> Any:
    """pydantic models mirroring the dataclass tree under `root`, strict, extras refused."""
    import pydantic

    made: dict[type, Any] = {}

    def convert(tp: Any) -> Any:
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            return model(tp)
        members = _tagged_union(tp)
        if members is not None:
            union = Union[tuple(convert(m) for m in members)]  # noqa: UP007
            tagged = Annotated[union, pydantic.Field(discriminator="kind")]
            return tagged | None if type(None) in get_args(tp) else tagged
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            return Union[tuple(convert(a) for a in get_args(tp))]  # noqa: UP007
        if origin is tuple:
            # Strict pydantic refuses a JSON list for a tuple: this one field is lax.
            item = convert(get_args(tp)[0])
            return Annotated[tuple[item, ...], pydantic.Strict(False)]  # type: ignore[valid-type]
        return tp

    def model(cls: type) -> Any:
        if cls not in made:
            hints = get_type_hints(cls)
            fields: dict[str, Any] = {}
            tag = getattr(cls, "KIND", None)
            if tag:
                fields["kind"] = (Literal[tag], tag)
            for f in dataclasses.fields(cls):
                if f.default is not dataclasses.MISSING:
                    fields[f.name] = (convert(hints[f.name]), f.default)
                elif f.default_factory is not dataclasses.MISSING:
                    fields[f.name] = (
                        convert(hints[f.name]),
                        pydantic.Field(default_factory=f.default_factory),
                    )
                else:
                    fields[f.name] = (convert(hints[f.name]), ...)

            def check(self: Any) -> Any:
                # The market's own cross-field rules, as the dataclass's __post_init__ has them.
                values = {f.name: getattr(self, f.name) for f in dataclasses.fields(cls)}
                for name, value in values.items():
                    if isinstance(value, pydantic.BaseModel):
                        values[name] = None
                cls.__post_init__(types.SimpleNamespace(**values))  # type: ignore[attr-defined]
                return self

            made[cls] = pydantic.create_model(
                cls.__name__,
                __config__=pydantic.ConfigDict(strict=True, extra="forbid", frozen=True),
                __validators__={"check": pydantic.model_validator(mode="after")(check)}
                if hasattr(cls, "__post_init__")
                else None,
                **fields,
            )
        return made[cls]

    return pydantic.TypeAdapter(convert(root))


def config_schema(name: str) -> Callable[[Any], Any]:
    """A checker of a whole edge.yaml document in library `name` (the handwritten one is
    the project's own `parse_config`)."""
    from edge_controller.market import MarketPolicy

    if name == "handwritten":
        from edge_controller.config import parse_config

        return lambda document: parse_config(document, "edge.yaml", Path.cwd())
    port = Annotated[int, _meta(name, ge=1, le=65535)]
    PORTS: Any = tuple[int, ...]  # noqa: N806
    if name == "pydantic":
        import pydantic

        PORTS = Annotated[PORTS, pydantic.Strict(False)]  # noqa: N806
    seconds = Annotated[int, _meta(name, ge=1, le=3600)]
    text = Annotated[str, _meta(name, min_length=1)]
    role = Literal["pv", "battery", "fuel_cell", "grid_meter", "meter"]
    classes: dict[str, Any] = {}
    spec: dict[str, dict[str, Any]] = {
        "Tls": {
            "ca_file": (text | None, None),
            "cert_file": (text | None, None),
            "key_file": (text | None, None),
        },
        "Broker": {
            "host": (text, "127.0.0.1"),
            "port": (port, 1883),
            "username": (str | None, None),
            "password": (str | None, None),
            "password_file": (text | None, None),
            "tls": ("Tls", None),
            "client_id": (str | None, None),
        },
        "Keys": {"node": (text, "node.key"), "meter": (text, "meter.key")},
        "Api": {
            "host": (text, "127.0.0.1"),
            "port": (port, 8780),
            "token_file": (text, "api-token"),
            "zeroconf": (bool, True),
        },
        "OpenDtu": {
            "profile": (Literal["opendtu"], ...),
            "base_topic": (text, ...),
            "serial": (text, ...),
            "power_rating_w": (int, ...),
        },
        "Victron": {
            "profile": (Literal["victron"], ...),
            "portal_id": (text, ...),
            "battery_capacity_wh": (int, ...),
            "grid_instance": (int | None, 30),
            "battery_instance": (int | None, 512),
            "pvinverter_instance": (int | None, 20),
            "vebus_instance": (int | None, 276),
        },
        "UsbHub": {
            "vendor_id": (int | None, None),
            "product_id": (int | None, None),
            "location": (str | None, None),
        },
        "UsbMeter": {"type": (Literal["fnirsi", "typec", "virtual"], "fnirsi"), "port": (int, 1)},
        "Usb": {
            "hub": ("UsbHub", None),
            "ports": (PORTS, (1,)),
            "meter": ("UsbMeter", None),
            "price": (int, 2000),
            "free_trickle": (bool | int, False),
            "watchdog_s": (int, 5),
            "resource_prefix": (str, "usb"),
        },
    }
    policy = msgspec_schema(MarketPolicy) if name == "msgspec" else None
    for cls_name, fields in spec.items():
        resolved = {k: (classes[t] if isinstance(t, str) else t, d) for k, (t, d) in fields.items()}
        classes[cls_name] = _class(name, cls_name, resolved)
    profile: Any
    if name == "msgspec":
        profile = classes["OpenDtu"] | classes["Victron"]
    else:
        import pydantic

        families = classes["OpenDtu"] | classes["Victron"]
        profile = Annotated[families, pydantic.Field(discriminator="profile")]
    device = _class(
        name,
        "Device",
        {
            "id": (text, ...),
            "role": (role, ...),
            "resource": (str, ""),
            "profile": (profile, ...),
            "stale_after_s": (int, 30),
        },
    )
    top = _class(
        name,
        "Top",
        {
            "name": (text, ...),
            "data_dir": (text, "data"),
            "genesis": (text, ...),
            "keys": (classes["Keys"], None),
            "community_broker": (classes["Broker"], ...),
            "device_broker": (classes["Broker"] | None, None),
            "api": (classes["Api"], None),
            "sealer": (bool | Literal["auto"], "auto"),
            "control_interval_s": (seconds, 2),
            "settlement_period_s": (Annotated[int, _meta(name, ge=1, le=1800)], 300),
            "devices": (list[device], []),
            "policy": (policy if policy is not None else pydantic_schema(MarketPolicy)._type, None),
            "usb": (classes["Usb"] | None, None),
        },
    )
    if name == "msgspec":
        import msgspec

        return lambda document: msgspec.convert(document, top, strict=True)
    import pydantic

    adapter = pydantic.TypeAdapter(top)
    return adapter.validate_python


def _meta(name: str, **limits: Any) -> Any:
    if name == "msgspec":
        import msgspec

        return msgspec.Meta(**limits)
    import annotated_types

    return (
        annotated_types.Interval(**{k: v for k, v in limits.items() if k != "min_length"})
        if "min_length" not in limits
        else annotated_types.MinLen(limits["min_length"])
    )


TAGGED = ("OpenDtu", "Victron")


def _class(name: str, cls_name: str, fields: dict[str, tuple[Any, Any]]) -> Any:
    if name == "msgspec":
        import msgspec

        # A tagged union in msgspec names its tag apart from the fields.
        tag = fields.pop("profile", (None, None))[0] if cls_name in TAGGED else None
        spec = [(k, t) if d is ... else (k, t, d) for k, (t, d) in fields.items()]
        spec.sort(key=lambda f: len(f) > 2)
        return msgspec.defstruct(
            cls_name,
            spec,
            forbid_unknown_fields=True,
            frozen=True,
            tag_field="profile" if tag else None,
            tag=get_args(tag)[0] if tag else None,
        )
    import pydantic

    return pydantic.create_model(
        cls_name,
        __config__=pydantic.ConfigDict(strict=True, extra="forbid", frozen=True),
        **{k: (t, d) for k, (t, d) in fields.items()},
    )


# --- the three kinds of input, checked by each candidate ------------------------------------


def checkers(name: str) -> dict[str, Callable[[Any], Any]]:
    """What each candidate runs for the config file, a policy and an offer body."""
    from edge_controller.market import MarketPolicy, OfferIntent

    config = config_schema(name)
    if name == "handwritten":
        from edge_controller.api.bodies import OfferBody
        from edge_controller.api.server import read_body

        return {
            "config": config,
            "policy": MarketPolicy.from_dict,
            "offer_body": lambda body: read_body(OfferBody, body),
            "offer_record": OfferIntent.from_body,
        }
    body: Any = _class(
        name,
        "OfferBody",
        {
            "resource": (str, ...),
            "mode": (str, ...),
            "quantity": (int, ...),
            "price": (int, ...),
            "start": (int | None, None),
            "end": (int | None, None),
            "expires": (int | None, None),
            "to": (list[Any] | None, None),
            "min_quantity": (int | None, None),
            "request": (str | None, None),
            "auction": (dict[str, Any] | None, None),
        },
    )
    policy = msgspec_schema(MarketPolicy) if name == "msgspec" else pydantic_schema(MarketPolicy)
    intent = msgspec_schema(OfferIntent) if name == "msgspec" else pydantic_schema(OfferIntent)
    if name == "msgspec":
        import msgspec

        def convert(tp: Any) -> Callable[[Any], Any]:
            return lambda data: msgspec.convert(data, tp, strict=True)

        return {
            "config": config,
            "policy": convert(policy),
            "offer_body": convert(body),
            "offer_record": lambda data: convert(intent)(
                {k: v for k, v in data.items() if k != "kind"}
            ),
        }
    import pydantic

    body_adapter = pydantic.TypeAdapter(body)
    return {
        "config": config,
        "policy": policy.validate_python,
        "offer_body": body_adapter.validate_python,
        "offer_record": lambda data: intent.validate_python(
            {k: v for k, v in data.items() if k != "kind"}
        ),
    }


def per_call_us(check: Callable[[Any], Any], data: Any, calls: int) -> float:
    """Median microseconds per call over 5 rounds of `calls` calls."""
    check(data)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            check(data)
        rounds.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(rounds)


def mistakes_reported(name: str, check: Callable[[Any], Any]) -> tuple[int, str]:
    """How many mistakes of BAD_POLICY the candidate reports, and its message."""
    try:
        check(BAD_POLICY)
    except Exception as error:  # each library has its own error type
        message = str(error)
        if name == "handwritten":
            return len(error.problems), message  # type: ignore[attr-defined]
        if name == "pydantic":
            return error.error_count(), message  # type: ignore[attr-defined]
        return 1, message
    return 0, "accepted"


IMPORT_PROBE = """
import sys, time, importlib.util
sys.path.insert(0, {root!r})
sys.argv = ["probe"]
def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
import edge_controller.market, yaml  # the project's own baseline, present in every case
spec = importlib.util.spec_from_file_location("bench_input", {script!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
before, start = rss_kb(), time.perf_counter()
if {name!r} == "handwritten":
    import edge_controller.market.checks  # the checker itself: the market already needs it
else:
    module.checkers({name!r})
print(time.perf_counter() - start, rss_kb() - before)
"""


def import_cost(name: str) -> tuple[float, float]:
    """Median ms and MB that importing the candidate and building its schemas add."""
    runs = []
    for _ in range(5):
        code = IMPORT_PROBE.format(root=str(ROOT), script=__file__, name=name)
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
        runs.append((float(out[0]) * 1000, int(out[1]) / 1024))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    """Print one block of figures per installed candidate."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        config = sample_config(Path(folder))
        policy = config["policy"]
        record = {"kind": "offer", **OFFER_BODY, "expires": OFFER_BODY["start"]}
        results: dict[str, Any] = {"python": sys.version.split()[0]}
        for name in CANDIDATES:
            try:
                __import__(name if name != "handwritten" else "edge_controller")
            except ImportError:
                print(f"{name}: not installed, skipped", file=sys.stderr)
                continue
            check = checkers(name)
            import_ms, import_mb = import_cost(name)
            found, message = mistakes_reported(name, check["policy"])
            results[name] = {
                "import_and_schemas_ms": round(import_ms, 1),
                "import_rss_mb": round(import_mb, 1),
                "config_us": round(per_call_us(check["config"], config, args.calls // 20), 1),
                "policy_us": round(per_call_us(check["policy"], policy, args.calls), 2),
                "offer_body_us": round(per_call_us(check["offer_body"], OFFER_BODY, args.calls), 2),
                "offer_record_us": round(per_call_us(check["offer_record"], record, args.calls), 2),
                "mistakes_reported": f"{found} of {BAD_POLICY_PATHS}",
                "first_line": message.splitlines()[0][:100],
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, figures in results.items():
        if name == "python":
            continue
        print(f"{name}:")
        for key, value in figures.items():
            print(f"  {key:24} {value}")


if __name__ == "__main__":
    main()

"""The home's configuration file (`edge.yaml`), read and checked before anything starts.

Every mistake is collected with its path in the file and what was expected, so an owner
fixes them all in one go; `load_config` raises `ConfigError` listing them and nothing
(ledger, keys, network) is touched until the file is right.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_controller.devices import Clock, Profile, ProfileError, profile_from_config
from edge_controller.market import MarketPolicy, ValidationError
from edge_controller.network import BrokerSettings
from edge_controller.usb.hub import check_sysfs_hub
from edge_controller.usb.sessions import HardwareOpener, UsbSettings
from edge_controller.usb.types import UsbError

DEVICE_ROLES = ("pv", "battery", "fuel_cell", "grid_meter", "meter")
DEFAULT_API_PORT = 8780


class ConfigError(Exception):
    """The configuration has mistakes; `problems` lists each as 'path: what was expected'."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{listing}")


@dataclass(frozen=True)
class DeviceConfig:
    """One device: the ledger resource it backs, its role and its MQTT profile."""

    id: str
    role: str
    profile: Profile
    resource: str = ""
    stale_after_ms: int = 30_000


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_API_PORT
    token_file: Path = Path("api-token")
    zeroconf: bool = True


@dataclass(frozen=True)
class UsbConfig:
    """USB-PD charging: which hub, which meter, and how the owner sells charge."""

    settings: UsbSettings
    hub_vendor_id: int | None = None
    hub_product_id: int | None = None
    hub_location: str | None = None
    hub_sysfs: str | None = None  # switch ports through /sys/bus/usb/devices (Linux >= 6.0)
    hub_sysfs_root: str = "/"  # where /sys is (a temporary tree in tests)
    meter: tuple[tuple[str, Any], ...] = (("type", "fnirsi"),)  # open_meter's settings
    meter_port: int = 1  # the hub port the meter stands in front of

    def opener(self, backend: Any = None, clock: Clock | None = None) -> HardwareOpener:
        """How to open this hub and meter: over pyusb with `backend` (libusb when None),
        meters keeping time by `clock` (the backend's own or the system's when None)."""
        return HardwareOpener(
            hub_vendor_id=self.hub_vendor_id,
            hub_product_id=self.hub_product_id,
            hub_location=self.hub_location,
            hub_sysfs=self.hub_sysfs,
            hub_sysfs_root=self.hub_sysfs_root,
            meter=dict(self.meter),
            meter_port=self.meter_port,
            backend=backend,
            clock=clock,
        )


@dataclass(frozen=True)
class HomeConfig:
    """Everything one home's edge controller needs to start."""

    name: str
    data_dir: Path
    genesis: Path
    community_broker: BrokerSettings
    device_broker: BrokerSettings | None = None
    node_key: Path = Path("node.key")
    meter_key: Path = Path("meter.key")
    api: ApiConfig = field(default_factory=ApiConfig)
    sealer: bool | None = None  # None: seal when the node key is a sealer in genesis
    control_interval_ms: int = 2_000
    settlement_period_ms: int = 300_000
    devices: tuple[DeviceConfig, ...] = ()
    policy: MarketPolicy = field(default_factory=MarketPolicy)
    usb: UsbConfig | None = None

    def path(self, relative: Path) -> Path:
        """A path from the file, relative to the data directory unless absolute."""
        return relative if relative.is_absolute() else self.data_dir / relative


class _Reader:
    """Reads typed values out of nested mappings, noting each problem with its path."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, expected: str) -> None:
        self.problems.append(f"{path}: {expected}")

    def mapping(self, data: Any, path: str) -> Mapping[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, Mapping):
            self.problem(path, "expected a mapping")
            return {}
        return data

    def unknown(self, data: Mapping[str, Any], path: str, known: set[str]) -> None:
        for key in data:
            if key not in known:
                self.problem(
                    f"{path}.{key}" if path else str(key),
                    f"unknown setting; expected one of {', '.join(sorted(known))}",
                )

    def text(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str) or not value:
            self.problem(_join(path, key), "expected a non-empty text")
            return default or ""
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, path: str, default: int, low: int, high: int
    ) -> int:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.problem(_join(path, key), f"expected an integer from {low} to {high}")
            return default
        return value

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.problem(_join(path, key), "expected true or false")
            return default
        return value

    def broker(self, data: Any, path: str) -> BrokerSettings:
        section = self.mapping(data, path)
        known = {"host", "port", "username", "password", "password_file", "tls", "client_id"}
        self.unknown(section, path, known)
        password = section.get("password")
        if "password_file" in section:
            file = Path(self.text(section, "password_file", path))
            try:
                password = file.read_text().strip()
            except OSError as exc:
                self.problem(_join(path, "password_file"), f"cannot be read ({exc.strerror})")
        tls = self.mapping(section.get("tls"), _join(path, "tls"))
        self.unknown(tls, _join(path, "tls"), {"ca_file", "cert_file", "key_file"})

        def tls_path(key: str) -> Path | None:
            if key not in tls:
                return None
            file = Path(self.text(tls, key, _join(path, "tls")))
            if not file.exists():
                self.problem(_join(path, f"tls.{key}"), f"no such file: {file}")
            return file

        username = section.get("username")
        if username is not None and not isinstance(username, str):
            self.problem(_join(path, "username"), "expected a text")
            username = None
        return BrokerSettings(
            host=self.text(section, "host", path, "127.0.0.1"),
            port=self.integer(section, "port", path, 1883, 1, 65535),
            username=username,
            password=password if isinstance(password, str) else None,
            tls_ca_file=tls_path("ca_file"),
            tls_cert_file=tls_path("cert_file"),
            tls_key_file=tls_path("key_file"),
            client_id=section.get("client_id")
            if isinstance(section.get("client_id"), str)
            else None,
        )


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


TOP_LEVEL = {
    "name",
    "data_dir",
    "genesis",
    "keys",
    "community_broker",
    "device_broker",
    "api",
    "sealer",
    "control_interval_s",
    "settlement_period_s",
    "devices",
    "policy",
    "usb",
}


def parse_config(data: Any, source: str = "configuration", base: Path | None = None) -> HomeConfig:
    """Check a parsed configuration document; raise `ConfigError` listing every problem.

    Relative file paths in the document are taken from `base` (the file's folder)."""
    base = base or Path.cwd()
    r = _Reader()
    top = r.mapping(data, "(top level)")
    r.unknown(top, "", TOP_LEVEL)
    name = r.text(top, "name", "")
    data_dir = base / r.text(top, "data_dir", "", "data")
    genesis = base / r.text(top, "genesis", "")
    if "genesis" in top and not genesis.is_file():
        r.problem("genesis", f"no such file: {genesis}")
    keys = r.mapping(top.get("keys"), "keys")
    r.unknown(keys, "keys", {"node", "meter"})
    community = r.broker(top.get("community_broker"), "community_broker")
    device_broker = (
        r.broker(top["device_broker"], "device_broker") if "device_broker" in top else None
    )
    api_section = r.mapping(top.get("api"), "api")
    r.unknown(api_section, "api", {"host", "port", "token_file", "zeroconf"})
    api = ApiConfig(
        host=r.text(api_section, "host", "api", "127.0.0.1"),
        port=r.integer(api_section, "port", "api", DEFAULT_API_PORT, 1, 65535),
        token_file=Path(r.text(api_section, "token_file", "api", "api-token")),
        zeroconf=r.boolean(api_section, "zeroconf", "api", True),
    )
    sealer_value = top.get("sealer", "auto")
    sealer: bool | None = None
    if isinstance(sealer_value, bool):
        sealer = sealer_value
    elif sealer_value != "auto":
        r.problem("sealer", "expected true, false or auto")
    devices = _devices(r, top.get("devices", []))
    policy = MarketPolicy()
    if "policy" in top:
        try:
            policy = MarketPolicy.from_dict(r.mapping(top["policy"], "policy"))
        except ValidationError as exc:
            r.problems.extend(f"policy.{p.path}: {p.message}" for p in exc.problems)
    config = HomeConfig(
        name=name,
        data_dir=data_dir,
        genesis=genesis,
        community_broker=community,
        device_broker=device_broker,
        node_key=Path(r.text(keys, "node", "keys", "node.key")),
        meter_key=Path(r.text(keys, "meter", "keys", "meter.key")),
        api=api,
        sealer=sealer,
        control_interval_ms=r.integer(top, "control_interval_s", "", 2, 1, 3600) * 1000,
        # Seed 003: metering periods from seconds to thirty minutes.
        settlement_period_ms=r.integer(top, "settlement_period_s", "", 300, 1, 1800) * 1000,
        devices=devices,
        policy=policy,
        usb=_usb(r, top["usb"], name) if top.get("usb") is not None else None,
    )
    if r.problems:
        raise ConfigError(source, r.problems)
    return config


def _devices(r: _Reader, data: Any) -> tuple[DeviceConfig, ...]:
    if not isinstance(data, list):
        r.problem("devices", "expected a list of devices")
        return ()
    devices: list[DeviceConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(data):
        path = f"devices[{i}]"
        entry = r.mapping(item, path)
        r.unknown(entry, path, {"id", "role", "resource", "profile", "stale_after_s"})
        device_id = r.text(entry, "id", path)
        if device_id in seen:
            r.problem(f"{path}.id", f"{device_id!r} is used by another device")
        seen.add(device_id)
        role = entry.get("role")
        if role not in DEVICE_ROLES:
            r.problem(f"{path}.role", f"expected one of {', '.join(DEVICE_ROLES)}")
            role = "meter"
        resource = entry.get("resource", "")
        if not isinstance(resource, str):
            r.problem(f"{path}.resource", "expected the ledger resource id as text")
            resource = ""
        try:
            profile = profile_from_config(
                r.mapping(entry.get("profile"), f"{path}.profile"), f"{path}.profile"
            )
        except ProfileError as exc:
            r.problems.append(str(exc))
            continue
        stale = r.integer(entry, "stale_after_s", path, 30, 1, 86_400)
        devices.append(DeviceConfig(device_id, str(role), profile, resource, stale * 1000))
    return tuple(devices)


USB_KEYS = {
    "hub",
    "meter",
    "ports",
    "price",
    "free_trickle",
    "max_session_s",
    "watchdog_s",
    "auto_purchase_wh",
    "resource_prefix",
    "reopen_s",
}


def _usb(r: _Reader, data: Any, home_name: str) -> UsbConfig:
    """The `usb:` section: hub (vendor/product id, location, or sysfs), meter (fnirsi or
    typec, and the port it stands in front of), ports, price, free trickle, session and
    watchdog limits."""
    path = "usb"
    section = r.mapping(data, path)
    r.unknown(section, path, USB_KEYS)
    hub_section = r.mapping(section.get("hub", {}), "usb.hub")
    r.unknown(
        hub_section, "usb.hub", {"vendor_id", "product_id", "location", "sysfs", "sysfs_root"}
    )
    ids: dict[str, int | None] = {}
    for key in ("vendor_id", "product_id"):
        ids[key] = (
            r.integer(hub_section, key, "usb.hub", 0, 0, 0xFFFF) if key in hub_section else None
        )
    location = hub_section.get("location")
    if location is not None and not isinstance(location, str):
        r.problem("usb.hub.location", 'expected a text such as "1-1.3"')
        location = None
    sysfs, sysfs_root = _usb_sysfs(r, hub_section)
    ports_value = section.get("ports", [1])
    ports: tuple[int, ...] = (1,)
    if (
        not isinstance(ports_value, list)
        or not ports_value
        or not all(type(p) is int and 1 <= p <= 15 for p in ports_value)
        or len(set(ports_value)) != len(ports_value)
    ):
        r.problem("usb.ports", "expected a list of distinct hub port numbers from 1 to 15")
    else:
        ports = tuple(ports_value)
    meter = dict(r.mapping(section.get("meter"), "usb.meter"))
    meter_port = r.integer(meter, "port", "usb.meter", ports[0], 1, 15)
    meter.pop("port", None)
    meter_type = meter.get("type", "fnirsi")
    if meter_type not in ("fnirsi", "typec"):
        r.problem("usb.meter.type", "expected fnirsi or typec")
    meter["type"] = meter_type
    trickle = section.get("free_trickle", False)
    trickle_mw: int | None = None
    if trickle is not False:
        trickle_mw = r.integer(section, "free_trickle", path, 0, 1, 100_000)
    prefix = section.get("resource_prefix") or _slug(home_name) or "usb"
    if not isinstance(prefix, str):
        r.problem("usb.resource_prefix", "expected a text")
        prefix = "usb"
    settings = UsbSettings(
        ports=ports,
        price=r.integer(section, "price", path, 2_000, 0, 10**9),
        free_trickle_mw=trickle_mw,
        max_session_ms=r.integer(section, "max_session_s", path, 14_400, 60, 7 * 86_400) * 1000,
        watchdog_ms=r.integer(section, "watchdog_s", path, 5, 2, 600) * 1000,
        auto_purchase_wh=r.integer(section, "auto_purchase_wh", path, 0, 0, 1_000),
        resource_prefix=prefix,
        reopen_ms=r.integer(section, "reopen_s", path, 10, 1, 3_600) * 1000,
    )
    return UsbConfig(
        settings=settings,
        hub_vendor_id=ids["vendor_id"],
        hub_product_id=ids["product_id"],
        hub_location=location,
        hub_sysfs=sysfs,
        hub_sysfs_root=sysfs_root,
        meter=tuple(sorted(meter.items())),
        meter_port=meter_port,
    )


def _usb_sysfs(r: _Reader, hub: Mapping[str, Any]) -> tuple[str | None, str]:
    """`usb.hub.sysfs` ("1-1.3", or "usbN" for a root hub) picks the sysfs `disable` files
    for port power; it names the hub by its place, so ids or a location beside it are an
    error. `sysfs_root` (tests) is where /sys is."""
    root = hub.get("sysfs_root", "/")
    if not isinstance(root, str) or not root:
        r.problem("usb.hub.sysfs_root", "expected a directory path")
        root = "/"
    if "sysfs" not in hub:
        if "sysfs_root" in hub:
            r.problem("usb.hub.sysfs_root", "only goes with usb.hub.sysfs")
        return None, root
    name = hub["sysfs"]
    if not isinstance(name, str):
        r.problem("usb.hub.sysfs", 'expected a text such as "1-1.3"')
        return None, root
    others = sorted(key for key in ("vendor_id", "product_id", "location") if key in hub)
    if others:
        r.problem(
            "usb.hub.sysfs",
            f"names the hub by its sysfs path; leave out {', '.join(others)} "
            "(those select a hub for hub class requests)",
        )
    try:
        return check_sysfs_hub(name), root
    except UsbError as exc:
        r.problem("usb.hub.sysfs", exc.message)
        return None, root


def _slug(name: str) -> str:
    return "-".join("".join(c if c.isalnum() else " " for c in name.lower()).split())[:40]


def load_config(path: Path) -> HomeConfig:
    """Read and check `edge.yaml`; raise `ConfigError` listing every problem."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read ({exc.strerror})"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "somewhere"
        raise ConfigError(str(path), [f"{where}: not valid YAML ({exc})"]) from None
    return parse_config(data, str(path), path.parent)

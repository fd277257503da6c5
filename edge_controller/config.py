"""The home's configuration file (`edge.yaml`), read and checked before anything starts.

Every mistake is collected with its path in the file and what was expected, so an owner
fixes them all in one go; `load_config` raises `ConfigError` listing them and nothing
(ledger, keys, network) is touched until the file is right.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml

from edge_controller.building_config import BuildingConfig, BuildingSection
from edge_controller.devices import Clock
from edge_controller.devices.homeassistant import HomeAssistantSource
from edge_controller.devices.profiles import Quantity
from edge_controller.devices.roles import Role
from edge_controller.devices.sources import DeviceSettings, DeviceSource
from edge_controller.devices.templates import expand_templates
from edge_controller.ledger import HistorySettings
from edge_controller.market import MarketPolicy, Problem, ValidationError
from edge_controller.market.checks import Between, Check, Checks, Expect, NonEmpty, OneOf, from_dict
from edge_controller.network import BrokerSettings
from edge_controller.usb.charging import HardwareOpener, UsbSettings
from edge_controller.usb.hub import check_sysfs_hub
from edge_controller.usb.types import UsbError

DEVICE_ROLES = tuple(role.value for role in Role)
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
    """One device: the ledger resource it backs, its role and where its telemetry comes
    from (an MQTT profile, a SunSpec device, Home Assistant entities)."""

    id: str
    role: Role
    profile: DeviceSource
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
    sealer: bool | None = None  # None: seal while the node key is in the sealer set in force
    control_interval_ms: int = 2_000
    settlement_period_ms: int = 300_000
    rating_grace_ms: int = 86_400_000
    devices: tuple[DeviceConfig, ...] = ()
    policy: MarketPolicy = field(default_factory=MarketPolicy)
    usb: UsbConfig | None = None
    # The registrar's folder (`energy-p2p-edge community found`) when this home keeps it.
    registrar_dir: Path | None = None
    building: BuildingConfig | None = None
    history: HistorySettings = field(default_factory=HistorySettings)

    def path(self, relative: Path) -> Path:
        """A path from the file, relative to the data directory unless absolute."""
        return relative if relative.is_absolute() else self.data_dir / relative


# --- the document as written: one dataclass per section, read by the market's checker ------
# Every mistake is reported at once with its path; a check that needs several fields of a
# section sits in that section's `__post_init__`, so it runs whenever the section is right.

Text = Annotated[str, NonEmpty()]
Port = Annotated[int, Between(1, 65535)]
HubPort = Annotated[int, Between(1, 15)]
UsbId = Annotated[int, Between(0, 0xFFFF)]


@dataclass(frozen=True)
class TlsSection:
    """`tls:` of a broker: files that must exist."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    ca_file: Text | None = None
    cert_file: Text | None = None
    key_file: Text | None = None

    def __post_init__(self) -> None:
        checks = Checks()
        for key in ("ca_file", "cert_file", "key_file"):
            file = getattr(self, key)
            checks.require(file is None or Path(file).exists(), key, f"no such file: {file}")
        checks.done()


@dataclass(frozen=True)
class AddressSection:
    """One entry of a broker's `addresses:`: a node of a broker cluster."""

    host: Text
    port: Port = 1883


def _unique_addresses(addresses: tuple[AddressSection, ...]) -> Iterable[tuple[str, str]]:
    seen: set[tuple[str, int]] = set()
    for i, address in enumerate(addresses):
        key = (address.host, address.port)
        if key in seen:
            yield f"[{i}]", f"{address.host}:{address.port} is listed twice"
        seen.add(key)


@dataclass(frozen=True)
class BrokerSection:
    """`community_broker:` or `device_broker:`; a `password_file` is read here (its first
    line the password, any further lines passwords to try when the broker refuses it).

    One broker is `host` and `port`; the nodes of a cluster are `addresses` instead (a list
    of `{host, port}`), tried in order, the next one whenever the current one is lost."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    host: Text | None = None
    port: Port | None = None
    addresses: Annotated[
        tuple[AddressSection, ...], Expect("a list of {host, port}"), Check(_unique_addresses)
    ] = ()
    username: Annotated[str, Expect("a text")] | None = None
    password: Annotated[str, Expect("a text")] | None = None
    password_file: Text | None = None
    tls: TlsSection = field(default_factory=TlsSection)
    client_id: Annotated[str, Expect("a text")] | None = None
    secret: str | None = field(init=False, default=None)
    fallback_secrets: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        checks = Checks()
        checks.require(
            not (self.addresses and (self.host is not None or self.port is not None)),
            "addresses",
            "give either host and port or addresses, not both",
        )
        checks.done()
        secret, fallbacks = self.password, []
        if self.password_file is not None:
            try:
                lines = Path(self.password_file).read_text().split("\n")
            except OSError as exc:
                raise ValidationError(
                    [Problem("password_file", f"cannot be read ({exc.strerror})")]
                ) from None
            secret, *fallbacks = [line.strip() for line in lines if line.strip()] or [""]
        object.__setattr__(self, "secret", secret)
        object.__setattr__(self, "fallback_secrets", tuple(fallbacks))

    def settings(self) -> BrokerSettings:
        """The broker settings the network layer takes."""
        tls = self.tls

        def path(file: str | None) -> Path | None:
            return None if file is None else Path(file)

        addresses = [(a.host, a.port) for a in self.addresses] or [
            (self.host or "127.0.0.1", self.port or 1883)
        ]
        (host, port), *alternates = addresses
        return BrokerSettings(
            host=host,
            port=port,
            alternates=tuple(alternates),
            username=self.username,
            password=self.secret,
            fallback_passwords=self.fallback_secrets,
            tls_ca_file=path(tls.ca_file),
            tls_cert_file=path(tls.cert_file),
            tls_key_file=path(tls.key_file),
            client_id=self.client_id,
        )


@dataclass(frozen=True)
class KeysSection:
    """`keys:`: the node's and the meter's key files."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    node: Text = "node.key"
    meter: Text = "meter.key"


@dataclass(frozen=True)
class ApiSection:
    """`api:`: where the API listens and where its token is kept."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    host: Text = "127.0.0.1"
    port: Port = DEFAULT_API_PORT
    token_file: Text = "api-token"
    zeroconf: bool = True


@dataclass(frozen=True)
class DeviceSection:
    """One entry of `devices:`; its profile is built here, so its mistakes have a path."""

    id: Text
    role: Annotated[str, OneOf(DEVICE_ROLES)]
    profile: DeviceSettings
    resource: Annotated[str, Expect("the ledger resource id as text")] = ""
    stale_after_s: Annotated[int, Between(1, 86_400)] = 30

    def config(self) -> DeviceConfig:
        """The device as the home runs it."""
        return DeviceConfig(
            self.id, Role(self.role), self.profile.build(), self.resource, self.stale_after_s * 1000
        )


def _unique_ids(devices: tuple[DeviceSection, ...]) -> Iterable[tuple[str, str]]:
    seen: set[str] = set()
    for i, device in enumerate(devices):
        if device.id in seen:
            yield f"[{i}].id", f"{device.id!r} is used by another device"
        seen.add(device.id)


# --- usb -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsbHubSection:
    """`usb.hub:` by ids or location (hub class requests), or by its sysfs name.

    `sysfs` ("1-1.3", or "usbN" for a root hub) picks the sysfs `disable` files for port
    power; it names the hub by its place, so ids or a location beside it are an error.
    `sysfs_root` (tests) is where /sys is."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    vendor_id: UsbId | None = None
    product_id: UsbId | None = None
    location: Annotated[str, Expect('a text such as "1-1.3"')] | None = None
    sysfs: Annotated[str, Expect('a text such as "1-1.3"')] | None = None
    sysfs_root: Annotated[str, Expect("a directory path"), NonEmpty()] | None = None
    sysfs_name: str | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        checks = Checks()
        if self.sysfs is None:
            checks.require(self.sysfs_root is None, "sysfs_root", "only goes with usb.hub.sysfs")
        else:
            others = [k for k in ("location", "product_id", "vendor_id") if getattr(self, k)]
            checks.require(
                not others,
                "sysfs",
                f"names the hub by its sysfs path; leave out {', '.join(sorted(others))} "
                "(those select a hub for hub class requests)",
            )
            try:
                object.__setattr__(self, "sysfs_name", check_sysfs_hub(self.sysfs))
            except UsbError as exc:
                checks.require(False, "sysfs", exc.message)
        checks.done()


METER_TYPES = ("fnirsi", "typec")


def _meter_problems(meter: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """`usb.meter:` is open_meter's settings; only `type` and `port` are ours to check."""
    port = meter.get("port", 1)
    if type(port) is not int or not 1 <= port <= 15:
        yield "port", "expected an integer from 1 to 15"
    if meter.get("type", "fnirsi") not in METER_TYPES:
        yield "type", "expected fnirsi or typec"


def _hub_ports(ports: tuple[int, ...]) -> Iterable[tuple[str, str]]:
    if not ports or len(set(ports)) != len(ports) or not all(1 <= p <= 15 for p in ports):
        yield "", "expected a list of distinct hub port numbers from 1 to 15"


@dataclass(frozen=True)
class UsbSection:
    """`usb:`: hub (ids, location or sysfs name), meter (fnirsi or typec, and the port it
    stands in front of), ports, price, free trickle, session and watchdog limits."""

    hub: Annotated[
        UsbHubSection, Expect("a mapping with vendor_id, product_id, location or sysfs")
    ] = field(default_factory=UsbHubSection)
    meter: Annotated[dict[str, Any], Check(_meter_problems)] | None = None
    ports: Annotated[
        tuple[int, ...],
        Expect("a list of distinct hub port numbers from 1 to 15"),
        Check(_hub_ports),
    ] = (1,)
    price: Annotated[int, Between(0, 10**9)] = 2_000
    free_trickle: Annotated[
        Literal[False] | Annotated[int, Between(1, 100_000)],
        Expect("false or a power in mW from 1 to 100000"),
    ] = False
    max_session_s: Annotated[int, Between(60, 7 * 86_400)] = 14_400
    watchdog_s: Annotated[int, Between(2, 600)] = 5
    auto_purchase_wh: Annotated[int, Between(0, 1_000)] = 0
    resource_prefix: Annotated[str, Expect("a text")] | None = None
    reopen_s: Annotated[int, Between(1, 3_600)] = 10

    def config(self, home_name: str) -> UsbConfig:
        """The USB setup as the home runs it; the resource prefix defaults to the home's name."""
        hub = self.hub
        meter = dict(self.meter or {})
        meter_port = meter.pop("port", self.ports[0])
        meter.setdefault("type", "fnirsi")
        settings = UsbSettings(
            ports=self.ports,
            price=self.price,
            free_trickle_mw=self.free_trickle or None,
            max_session_ms=self.max_session_s * 1000,
            watchdog_ms=self.watchdog_s * 1000,
            auto_purchase_wh=self.auto_purchase_wh,
            resource_prefix=self.resource_prefix or _slug(home_name) or "usb",
            reopen_ms=self.reopen_s * 1000,
        )
        return UsbConfig(
            settings=settings,
            hub_vendor_id=hub.vendor_id,
            hub_product_id=hub.product_id,
            hub_location=hub.location,
            hub_sysfs=hub.sysfs_name,
            hub_sysfs_root=hub.sysfs_root or "/",
            meter=tuple(sorted(meter.items())),
            meter_port=meter_port,
        )


@dataclass(frozen=True)
class RegistrarSection:
    """`registrar:`: the registrar's folder this home keeps (its key, invitations, the
    broker's login and ACL files), so its API answers membership requests."""

    directory: Text

    def __post_init__(self) -> None:
        checks = Checks()
        key = Path(self.directory) / "registrar.key"
        checks.require(key.is_file(), "directory", f"no registrar key at {key}")
        checks.done()


@dataclass(frozen=True)
class LedgerSection:
    """`ledger:`: how much of the chain the home keeps and how it joins its community
    (`edge_controller/ledger/prune.py`, `snapshot.py`)."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    # Block bodies kept, in months (headers and the state are always kept): the owner's
    # statements. Up to a century.
    history_months: Annotated[int, Between(1, 1200)] = 13
    # Keep every block body and serve history to peers.
    archive: bool = False
    # An empty ledger starts from a peer's snapshot at the latest final checkpoint, or
    # replays every block from genesis.
    join: Annotated[Literal["snapshot", "replay"], Expect("snapshot or replay")] = "snapshot"

    def settings(self) -> HistorySettings:
        return HistorySettings(self.history_months, self.archive, self.join)


# --- the whole file ------------------------------------------------------------------------


@dataclass(frozen=True)
class ConfigDocument:
    """`edge.yaml` as written; `home()` turns it into the `HomeConfig` a home starts from."""

    NONE_IS_EMPTY: ClassVar[bool] = True
    name: Text
    genesis: Text
    data_dir: Text = "data"
    keys: KeysSection = field(default_factory=KeysSection)
    community_broker: BrokerSection = field(default_factory=BrokerSection)
    device_broker: BrokerSection | None = None
    api: ApiSection = field(default_factory=ApiSection)
    sealer: Annotated[bool | Literal["auto"], Expect("true, false or auto")] = "auto"
    control_interval_s: Annotated[int, Between(1, 3600)] = 2
    # Seed 003: metering periods from seconds to thirty minutes.
    settlement_period_s: Annotated[int, Between(1, 1800)] = 300
    # How long a settled trade waits for the owner's rating before the home rates it.
    rating_grace_s: Annotated[int, Between(0, 30 * 86_400)] = 86_400
    devices: Annotated[
        tuple[DeviceSection, ...], Expect("a list of devices"), Check(_unique_ids)
    ] = ()
    policy: MarketPolicy | None = None
    usb: UsbSection | None = None
    registrar: RegistrarSection | None = None
    building: BuildingSection | None = None

    def __post_init__(self) -> None:
        checks = Checks()
        for path, message in _building_problems(self):
            checks.require(False, path, message)
        checks.done()

    ledger: LedgerSection = field(default_factory=LedgerSection)

    def home(self, base: Path, device_broker_given: bool) -> HomeConfig:
        """The home's configuration; relative paths are taken from `base`."""
        device_broker = self.device_broker
        if device_broker is None and device_broker_given:
            device_broker = BrokerSection()  # `device_broker:` with nothing under it
        return HomeConfig(
            name=self.name,
            data_dir=base / self.data_dir,
            genesis=base / self.genesis,
            community_broker=self.community_broker.settings(),
            device_broker=device_broker.settings() if device_broker else None,
            node_key=Path(self.keys.node),
            meter_key=Path(self.keys.meter),
            api=ApiConfig(
                self.api.host, self.api.port, Path(self.api.token_file), self.api.zeroconf
            ),
            sealer=None if self.sealer == "auto" else bool(self.sealer),
            control_interval_ms=self.control_interval_s * 1000,
            settlement_period_ms=self.settlement_period_s * 1000,
            rating_grace_ms=self.rating_grace_s * 1000,
            devices=tuple(device.config() for device in self.devices),
            policy=self.policy or MarketPolicy(),
            usb=self.usb.config(self.name) if self.usb is not None else None,
            registrar_dir=Path(self.registrar.directory) if self.registrar else None,
            building=self.building.config() if self.building is not None else None,
            history=self.ledger.settings(),
        )


def _building_problems(document: ConfigDocument) -> Iterable[tuple[str, str]]:
    """A building's taps read devices of `devices:` and cut off through `usb:` ports."""
    building = document.building
    if building is None:
        return
    counters = {Quantity.IMPORT_ENERGY_WH, Quantity.EXPORT_ENERGY_WH}
    sources = {d.id: d.profile.build() for d in document.devices}
    devices = {i: source.quantities() for i, source in sources.items()}
    # A Home Assistant device's entities come later, from the integration's options.
    unmapped = {
        i for i, s in sources.items() if isinstance(s, HomeAssistantSource) and not s.entities
    }
    ports = document.usb.ports if document.usb is not None else ()
    if building.period_s < document.control_interval_s:
        yield (
            "building.period_s",
            (
                f"must be at least control_interval_s ({document.control_interval_s}): "
                "the taps are read once a control cycle"
            ),
        )
    for i, tap in enumerate(building.taps):
        where = f"building.taps[{i}]"
        if tap.device not in devices:
            yield f"{where}.device", f"{tap.device!r} is not in devices"
        elif tap.device not in unmapped and not counters & devices[tap.device]:
            yield f"{where}.device", f"{tap.device!r} reports no import or export energy (Wh)"
        cut = tap.cut_off
        if cut is not None and cut.device is not None and cut.device not in devices:
            yield f"{where}.cut_off.device", f"{cut.device!r} is not in devices"
        if cut is not None and cut.usb_port is not None and cut.usb_port not in ports:
            yield f"{where}.cut_off.usb_port", f"port {cut.usb_port} is not one of usb.ports"


def parse_config(data: Any, source: str = "configuration", base: Path | None = None) -> HomeConfig:
    """Check a parsed configuration document; raise `ConfigError` listing every problem.

    Relative file paths in the document are taken from `base` (the file's folder)."""
    base = base or Path.cwd()
    top: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    problems: list[Problem] = []
    document: ConfigDocument | None = None
    try:
        # `template: NAME` entries become the profile the catalogue gives for NAME.
        data = expand_templates(data)
        document = from_dict(ConfigDocument, data)
    except ValidationError as error:
        problems.extend(error.problems)
    # Checked beside the rest, so a missing genesis is named with every other mistake.
    genesis = top.get("genesis")
    if isinstance(genesis, str) and genesis and not (base / genesis).is_file():
        problems.append(Problem("genesis", f"no such file: {base / genesis}"))
    if problems or document is None:
        raise ConfigError(source, [str(p) for p in problems])
    return document.home(base, "device_broker" in top)


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

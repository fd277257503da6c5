"""Found a community, invite a home, join with an invitation: the files each step writes.

Each step writes all its files or none: `found` builds its folder beside the target and
renames it into place at the end; `invite` and `join` stage their files and put them in
place together once everything is checked (`files.FileGroup`).
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from edge_controller.community.book import REGISTRAR_KEY, Book, Registry
from edge_controller.community.broker import (
    CA_FILE,
    CONF_FILE,
    mosquitto_conf,
    new_password,
    password_hash,
    password_line,
    write_tls,
)
from edge_controller.community.errors import CommunityError, Problem
from edge_controller.community.files import FileGroup, write_public
from edge_controller.community.invitation import (
    MAX_RESOURCES,
    Invitation,
    check_invitation,
    new_invitation_id,
    sign_invitation,
    sign_request,
)
from edge_controller.config import ConfigError, parse_config
from edge_controller.devices.profiles import Quantity
from edge_controller.ledger import DEFAULT_FORGET_AFTER_MS, Consensus, Genesis, KeyPair
from edge_controller.ledger.records import MAX_MEMBER_NAME

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
# Where a joining home keeps its signed membership request until a member record names it.
REQUEST_FILE = "membership-request.json"
DEFAULT_VALID_HOURS = 72
MAX_VALID_HOURS = 24 * 90
# The ledger's resource kind of each device role that backs a resource.
KIND_OF_ROLE = {
    "pv": "pv",
    "battery": "battery",
    "fuel_cell": "fuel_cell",
    "grid_meter": "meter",
    "meter": "meter",
}


def login_of(name: str) -> str:
    """A broker login made from a home's name: lower case letters, digits and dashes."""
    slug = "-".join(re.sub(r"[^a-z0-9]+", " ", name.lower()).split())[:32].strip("-")
    return slug or "home"


def _check_name(name: str, what: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_MEMBER_NAME or not name.isprintable():
        raise CommunityError(
            Problem.BAD_INPUT, f"{what} must be 1 to {MAX_MEMBER_NAME} printable characters"
        )
    return name


def found(
    out: Path,
    *,
    name: str,
    currency: str,
    home: str,
    broker_host: str,
    broker_port: int,
    now: int,
    block_interval_ms: int = 5_000,
    forget_after_ms: int = DEFAULT_FORGET_AFTER_MS,
    devices_from: Path | None = None,
) -> dict[str, Any]:
    """A new community in `out`: genesis (proof of authority, the founder's home its
    sealer), the registrar's key and book, the broker's TLS files, logins and ACL, and the
    founder's home with an invitation it has already taken (`join`)."""
    name = _check_name(name, "the community's name")
    home = _check_name(home, "the home's name")
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise CommunityError(
            Problem.ALREADY_EXISTS, f"{out} already holds files; pick a new folder"
        )
    building = out.with_name(f".{out.name}.founding")
    shutil.rmtree(building, ignore_errors=True)
    try:
        for folder in ("registrar", "broker", "home", "home/data"):
            (building / folder).mkdir(parents=True, mode=0o700)
        if devices_from is not None:
            # The founder's home asks for its devices' resources as any joining home does.
            _copy_devices(devices_from, building / "home" / "edge.yaml")
        registrar = KeyPair.generate()
        registrar.save(building / "registrar" / REGISTRAR_KEY)
        node = KeyPair.generate()
        node.save(building / "home" / "data" / "node.key")
        genesis = Genesis(
            name=name,
            currency=currency,
            time=now,
            registrars=(registrar.public_hex,),
            consensus=Consensus(
                mode="poa",
                block_interval_ms=block_interval_ms,
                sealers=(node.public_hex,),
                forget_after_ms=forget_after_ms,
            ),
        )
        genesis.save(building / "genesis.json")
        stamp = datetime.datetime.fromtimestamp(now / 1000, datetime.UTC)
        write_tls(building / "broker", broker_host, stamp)
        book = Book(genesis.community_id, broker_host, broker_port)
        Registry(building / "registrar").save(book)
        # Final paths, as the broker and the founder's home will read them.
        registry = Registry(out / "registrar")
        registry.broker_dir = building / "broker"
        registry.folder = building / "registrar"
        write_public(building / "broker" / CONF_FILE, mosquitto_conf(out / "broker", broker_port))
        invitation = invite(
            registry,
            registrar,
            home,
            1,
            now,
            registrar_home=True,
            ca_file=building / "broker" / CA_FILE,
            node_id=node.account,
        )
        joined = join(
            json.loads(Path(invitation["file"]).read_text()),
            building / "home" / "edge.yaml",
            now=now,
            final_dir=out / "home",
            extra={"registrar": {"directory": str(out / "registrar")}},
        )
        for ext in ("json", "txt", "png"):
            (building / "registrar" / "invitations" / f"{invitation['id']}.{ext}").unlink()
        if out.exists():
            _move_into(building, out)
        else:
            building.rename(out)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return {
        "community": genesis.community_id,
        "genesis": str(out / "genesis.json"),
        "registrar": registrar.public_hex,
        "home": str(out / "home" / "edge.yaml"),
        "account": joined["account"],
        "resources": joined["resources"],
        "broker": str(out / "broker" / CONF_FILE),
    }


def _copy_devices(source: Path, config: Path) -> None:
    """Start the founder's edge.yaml with the devices (and device broker) of `source`."""
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise CommunityError(Problem.BAD_INPUT, f"{source} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise CommunityError(Problem.BAD_INPUT, f"{source} is not an edge.yaml")
    kept = {k: data[k] for k in ("devices", "device_broker", "policy") if k in data}
    write_public(config, yaml.safe_dump(kept, sort_keys=False, allow_unicode=True))


def _move_into(building: Path, out: Path) -> None:
    """Move the founded folder's contents into the empty folder `out`."""
    for item in building.iterdir():
        item.rename(out / item.name)
    building.rmdir()


def invite(
    registry: Registry,
    registrar: KeyPair,
    home: str,
    valid_hours: int,
    now: int,
    *,
    registrar_home: bool = False,
    ca_file: Path | None = None,
    node_id: str = "",
    genesis: Genesis | None = None,
    qr: bool = True,
) -> dict[str, Any]:
    """Issue an invitation for the home named `home`: a new broker login (its password in
    the invitation only), the book's entry, the broker's password file and ACL, and the
    invitation as a file, a short text and a QR code."""
    home = _check_name(home, "the home's name")
    if not 1 <= valid_hours <= MAX_VALID_HOURS:
        raise CommunityError(
            Problem.BAD_INPUT, f"an invitation is valid for 1 to {MAX_VALID_HOURS} hours"
        )
    ca_file = ca_file or registry.broker_dir / CA_FILE
    # A broker without TLS (the demo's) has no CA: the invitation carries an empty one.
    try:
        ca_pem = ca_file.read_text() if ca_file.exists() else ""
    except OSError as exc:
        raise CommunityError(Problem.NOT_REGISTRAR, f"cannot read the broker's CA: {exc}") from None
    genesis = genesis or Genesis.load(registry.folder.parent / "genesis.json")
    folder = registry.folder / "invitations"
    folder.mkdir(mode=0o700, exist_ok=True)
    password = new_password()
    invitation_id = new_invitation_id()
    with registry.locked() as book:
        login = login_of(home)
        base, n = login, 2
        while login in book.logins:
            login = f"{base[:28]}-{n}"
            n += 1
        body = {
            "v": 1,
            "id": invitation_id,
            "community": book.community,
            "home": home,
            "expires": now + valid_hours * HOUR_MS,
            "genesis": genesis.to_json(),
            "broker": {"host": book.broker_host, "port": book.broker_port},
            "ca": ca_pem,
            "login": {"username": login, "password": password},
        }
        document = sign_invitation(registrar, body)
        checked = check_invitation(document, now)
        files = {ext: folder / f"{invitation_id}.{ext}" for ext in ("json", "txt", "png")}
        with FileGroup() as group:
            group.stage(files["json"], json.dumps(document, indent=2) + "\n", private=True)
            group.stage(files["txt"], checked.text() + "\n", private=True)
            png = qr_png(checked.text()) if qr else None
            if png is not None:
                group.stage(files["png"], png, private=True)
            book.invitations[invitation_id] = {
                "home": home,
                "login": login,
                "expires": body["expires"],
                "state": "issued",
                "issued": now,
            }
            book.logins[login] = {"registrar": registrar_home, "node_id": node_id}
            book.passwords[login] = password_line(login, password)
            book.close_logins(now)  # invitations that expired unused open nothing more
            registry.write_broker_files(book)
            group.commit()
    return {
        "id": invitation_id,
        "home": home,
        "login": login,
        "expires": body["expires"],
        "text": checked.text(),
        "file": str(files["json"]),
        "text_file": str(files["txt"]),
        "qr_file": str(files["png"]) if png is not None else None,
    }


def qr_png(text: str) -> bytes | None:
    """A QR code of `text` as PNG bytes (None where segno is not installed: the text and
    the file carry the same invitation)."""
    try:
        import segno  # noqa: PLC0415 (only an invitation draws one; the demo's homes never do)
    except ImportError:
        log.warning("no QR code for the invitation: the segno package is not installed")
        return None
    out = io.BytesIO()
    segno.make(text, error="l").save(out, kind="png", scale=4)
    return out.getvalue()


def join(
    document: Any,
    config: Path,
    *,
    now: int,
    name: str | None = None,
    final_dir: Path | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Join with an invitation: write the genesis, the broker's CA and password, the
    community broker's settings in `config` (an edge.yaml, created when missing; its
    `devices:` kept), the keys, and the signed membership request the edge controller
    sends the registrar when it runs. `final_dir` is where `config`'s folder will be
    (found builds the founder's home elsewhere first)."""
    invitation = check_invitation(document, now)
    display = _check_name(name or invitation.home, "the home's name")
    config = config.resolve()
    folder = config.parent
    final = final_dir or folder
    try:
        data = yaml.safe_load(config.read_text()) if config.exists() else None
    except (OSError, yaml.YAMLError) as exc:
        raise CommunityError(Problem.BAD_INPUT, f"{config} cannot be read: {exc}") from None
    doc: dict[str, Any] = dict(data) if isinstance(data, dict) else {}
    genesis_file = folder / "genesis.json"
    if genesis_file.exists():
        try:
            same = Genesis.load(genesis_file).community_id == invitation.genesis.community_id
        except (OSError, ValueError, KeyError, TypeError):
            same = False
        if not same:
            raise CommunityError(
                Problem.ALREADY_EXISTS,
                f"{genesis_file} already holds another community; join from a new folder",
            )
    doc.setdefault("name", display)
    doc.setdefault("data_dir", str(final / "data"))
    doc["genesis"] = str(final / "genesis.json")
    doc["community_broker"] = {
        "host": invitation.broker_host,
        "port": invitation.broker_port,
        "username": invitation.username,
        "password_file": str(final / "community-password"),
    }
    if invitation.ca_pem:
        doc["community_broker"]["tls"] = {"ca_file": str(final / "community-ca.crt")}
    doc.update(extra or {})
    devices = doc.get("devices") or []
    for device in devices if isinstance(devices, list) else []:
        if isinstance(device, dict) and not device.get("resource") and device.get("id"):
            device["resource"] = f"{invitation.username}/{device['id']}"
    data_dir = folder / str(doc["data_dir"])
    if data_dir.is_relative_to(final):
        data_dir = folder / data_dir.relative_to(final)
    support = [genesis_file, folder / "community-ca.crt", folder / "community-password"]
    own_password = new_password()
    new_files = [path for path in support if not path.exists()]
    with FileGroup() as group:
        for path, content, private in (
            (
                genesis_file,
                json.dumps(invitation.genesis.to_json(), indent=2, sort_keys=True) + "\n",
                False,
            ),
            (folder / "community-ca.crt", invitation.ca_pem, False),
            # Its own password first: the broker takes it once the registrar approved the
            # home; until then the invitation's, on the next line (`BrokerSection`).
            (folder / "community-password", f"{own_password}\n{invitation.password}\n", True),
        ):
            group.stage(path, content, private)
        group.commit()
        # Put in place so the configuration can be checked whole; removed again on failure.
        group.created = new_files
        checked_doc = _paths_for_check(doc, folder, final)
        try:
            home = parse_config(checked_doc, str(config), folder)
        except ConfigError as exc:
            raise CommunityError(Problem.BAD_INPUT, str(exc)) from None
        resources = _resources(home.devices)
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        keys = doc.get("keys") or {}
        node_file = data_dir / str(keys.get("node", "node.key"))
        meter_file = data_dir / str(keys.get("meter", "meter.key"))
        node = _key(node_file, group)
        meter = _key(meter_file, group)
        request = membership_request(
            invitation, node, meter, display, resources, now, broker_password=own_password
        )
        group.stage(data_dir / REQUEST_FILE, json.dumps(request, indent=2) + "\n")
        group.stage(config, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
        group.commit()
    return {
        "community": invitation.genesis.community_id,
        "name": display,
        "account": node.account,
        "login": invitation.username,
        "resources": resources,
        "config": str(final / config.name),
    }


def membership_request(
    invitation: Invitation,
    node: KeyPair,
    meter: KeyPair,
    name: str,
    resources: list[dict[str, Any]],
    now: int,
    broker_password: str | None = None,
) -> dict[str, Any]:
    """The home's signed membership request for `invitation` (written to its data folder
    as `REQUEST_FILE`, which its edge controller sends to the registrar), with the hash of
    `broker_password`, the home's own, when it has one."""
    body: dict[str, Any] = {
        "v": 1,
        "invitation": invitation.id,
        "community": invitation.genesis.community_id,
        "login": invitation.username,
        "name": name,
        "meter": meter.public_hex,
        "resources": resources,
        "time": now,
    }
    if broker_password is not None:
        body["broker_password"] = password_hash(broker_password)
    return sign_request(node, body)


def _paths_for_check(doc: dict[str, Any], folder: Path, final: Path) -> dict[str, Any]:
    """`doc` with its final paths pointing into `folder`, where the files are now."""
    if final == folder:
        return doc
    checked: dict[str, Any] = json.loads(json.dumps(doc))
    swap = str(final)
    checked["genesis"] = checked["genesis"].replace(swap, str(folder))
    broker = checked["community_broker"]
    broker["password_file"] = broker["password_file"].replace(swap, str(folder))
    if "tls" in broker:
        broker["tls"]["ca_file"] = broker["tls"]["ca_file"].replace(swap, str(folder))
    checked.pop("registrar", None)
    return checked


def _key(path: Path, group: FileGroup) -> KeyPair:
    """The key at `path`, created (and named for removal on failure) when missing."""
    if path.exists():
        try:
            return KeyPair.load(path)
        except (OSError, ValueError) as exc:
            raise CommunityError(Problem.BAD_INPUT, f"{path} is not a key: {exc}") from None
    key = KeyPair.generate()
    key.save(path)
    group.created.append(path)
    return key


def _resources(devices: Any) -> list[dict[str, Any]]:
    """The resources a home's devices back, as its membership request names them."""
    result = []
    for device in devices:
        kind = KIND_OF_ROLE.get(device.role.value)
        if kind is None or not device.resource:
            continue
        constants = device.profile.constants
        result.append(
            {
                "resource": device.resource,
                "kind": kind,
                "power_w": int(constants.get(Quantity.POWER_RATING_W, 0)),
                "capacity_wh": int(constants.get(Quantity.CAPACITY_WH, 0)),
            }
        )
    if len(result) > MAX_RESOURCES:
        raise CommunityError(
            Problem.BAD_INPUT, f"a home registers at most {MAX_RESOURCES} resources at once"
        )
    return result

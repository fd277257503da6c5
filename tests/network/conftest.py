"""Fixtures of the network tests: links on a real broker, a broker that requires a password."""

from __future__ import annotations

import asyncio
import datetime
import getpass
import ipaddress
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_controller.network import BrokerSettings, CommunityLink, LinkLimits, Validator
from tests.conftest import free_port, wait_for_port

# Short reconnect pauses so broker restarts cost a fraction of a second in tests.
FAST_LIMITS = LinkLimits(reconnect_initial_s=0.05, reconnect_max_s=0.5, publish_timeout_s=5.0)
COMMUNITY = "test-community"


class LinkFactory(Protocol):
    def __call__(
        self,
        node_id: str,
        broker: BrokerSettings,
        *,
        limits: LinkLimits = ...,
        validator: Validator | None = ...,
        outbox: Path | None = ...,
    ) -> CommunityLink: ...


@pytest.fixture
async def make_link(tmp_path: Path) -> AsyncIterator[LinkFactory]:
    """Build links (not started) whose outbox lives in the test's directory; stops them after."""
    created: list[CommunityLink] = []

    def make(
        node_id: str,
        broker: BrokerSettings,
        *,
        limits: LinkLimits = FAST_LIMITS,
        validator: Validator | None = None,
        outbox: Path | None = None,
    ) -> CommunityLink:
        link = CommunityLink(
            node_id=node_id,
            community_id=COMMUNITY,
            broker=broker,
            outbox_path=outbox or tmp_path / f"{node_id}-outbox.sqlite3",
            limits=limits,
            validator=validator,
        )
        created.append(link)
        return link

    yield make
    for link in created:
        await link.stop()


Condition = Callable[[], bool]


async def _wait_until(condition: Condition, seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        # Polling on purpose: the conditions span several links and counters, no one event.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


@pytest.fixture
def wait_until() -> Callable[[Condition, float], Awaitable[None]]:
    """``await wait_until(condition, seconds)``: poll until true, TimeoutError otherwise."""
    return _wait_until


@pytest.fixture
def free_tcp_port() -> int:
    """A loopback port nothing listens on: a broker that is down."""
    return free_port()


USERNAME = "home-a"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def password_mosquitto(tmp_path: Path) -> Iterator[BrokerSettings]:
    """A Mosquitto that refuses anonymous clients; the settings carry the right password."""
    passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    password_file = tmp_path / "passwords"
    subprocess.run([passwd, "-b", "-c", str(password_file), USERNAME, PASSWORD], check=True)
    port = free_port()
    config = tmp_path / "mosquitto-auth.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {password_file}\n"
        "persistence false\n"
        # Run as root, mosquitto drops to its own user, which cannot read pytest's
        # private tmp_path; staying the current user keeps the password file readable.
        f"user {getpass.getuser()}\n"
    )
    with _running_mosquitto(config, tmp_path / "mosquitto-auth.log", port):
        yield BrokerSettings(host="127.0.0.1", port=port, username=USERNAME, password=PASSWORD)


@contextmanager
def _running_mosquitto(config: Path, log: Path, port: int) -> Iterator[None]:
    """Run mosquitto with ``config`` (its output in ``log``) until the block ends."""
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with log.open("wb") as output:
        process = subprocess.Popen([binary, "-c", str(config)], stdout=output, stderr=output)
    try:
        try:
            wait_for_port(port)
        except TimeoutError as error:
            raise RuntimeError(f"mosquitto did not start: {log.read_text()}") from error
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class RestartableMosquitto:
    """A Mosquitto whose persistence really works, so sessions survive a restart."""

    host = "127.0.0.1"

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "mosquitto-persistent.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {directory}/\n"
            # Dropping to the mosquitto user would make the private tmp_path unwritable
            # and the database silently unsaved, so stay the current user.
            f"user {getpass.getuser()}\n"
        )
        self._log = directory / "mosquitto-persistent.log"
        self._running: ExitStack | None = None

    def start(self) -> None:
        stack = ExitStack()
        stack.enter_context(_running_mosquitto(self.config, self._log, self.port))
        self._running = stack

    def stop(self) -> None:
        if self._running is not None:
            self._running.close()
            self._running = None


@pytest.fixture
def persistent_mosquitto(tmp_path: Path) -> Iterator[RestartableMosquitto]:
    """A broker that keeps sessions, subscriptions and queued messages across a restart.

    A real community broker does; the suite-wide `mosquitto` fixture cannot save its
    database when run as root (it drops to the mosquitto user, which cannot write tmp_path).
    """
    broker = RestartableMosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _write_certificate(
    directory: Path,
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Write ``name``.crt and ``name``.key; self-signed (a CA) when ``issuer`` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    certificate = builder.sign(issuer_key, hashes.SHA256())
    (directory / f"{name}.crt").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return certificate, key


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[BrokerSettings]:
    """A Mosquitto on TLS only, requiring a client certificate signed by the test CA.

    The settings carry the CA and a valid client certificate and key.
    """
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = _write_certificate(certs, "ca", None, server=False)
    _write_certificate(certs, "broker", ca, server=True)
    _write_certificate(certs, "home", ca, server=False)
    port = free_port()
    config = tmp_path / "mosquitto-tls.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        f"cafile {certs / 'ca.crt'}\n"
        f"certfile {certs / 'broker.crt'}\n"
        f"keyfile {certs / 'broker.key'}\n"
        "require_certificate true\n"
        "persistence false\n"
        f"user {getpass.getuser()}\n"
    )
    with _running_mosquitto(config, tmp_path / "mosquitto-tls.log", port):
        yield BrokerSettings(
            host="127.0.0.1",
            port=port,
            tls_ca_file=certs / "ca.crt",
            tls_cert_file=certs / "home.crt",
            tls_key_file=certs / "home.key",
        )

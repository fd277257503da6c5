"""Community brokers as child processes on loopback: one Mosquitto, or a NATS cluster.

`NatsCluster` runs exactly `deploy/nats/node.conf` (filled in per node, with TLS and one
login per home) on three `nats-server` processes; the transport benchmark and the cluster
tests use it, so what they measure and check is what a community deploys. Certificates
are made on the spot by `write_certificates` (a CA and one certificate for 127.0.0.1).
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import shutil
import signal
import ssl
import string
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from edge_controller.network.nats import users_config
from edge_controller.processes import CHECKOUT, Child, free_port, wait_for_port

NODE_TEMPLATE = CHECKOUT / "deploy" / "nats" / "node.conf"


class BrokerMissing(RuntimeError):
    """The broker's program is not installed (scripts/ensure-system-packages installs it)."""


def nats_binary() -> str:
    """Path of `nats-server`, or BrokerMissing."""
    found = shutil.which("nats-server") or (
        "/usr/sbin/nats-server" if Path("/usr/sbin/nats-server").exists() else None
    )
    if found is None:
        raise BrokerMissing("nats-server is not installed: run scripts/ensure-system-packages")
    return found


def mosquitto_binary() -> str:
    """Path of `mosquitto`, or BrokerMissing."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if found is None:
        raise BrokerMissing("mosquitto is not installed: run scripts/ensure-system-packages")
    return found


@dataclass(frozen=True)
class Certificates:
    """A CA and a server certificate for 127.0.0.1 signed by it (PEM files)."""

    ca_file: Path
    cert_file: Path
    key_file: Path

    def client_context(self) -> ssl.SSLContext:
        """A TLS context that trusts the CA, for test and benchmark clients."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def write_certificates(folder: Path, hours: int = 24) -> Certificates:
    """Make a CA and a broker certificate (valid for 127.0.0.1 and localhost) in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "energy-p2p test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=hours))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        # The routes between nodes present it as client and server both.
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(folder / "ca.crt", folder / "broker.crt", folder / "broker.key")
    files.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    files.key_file.chmod(0o600)
    return files


def mqtt_ready(
    port: int, certificates: Certificates, login: tuple[str, str] | None, timeout: float
) -> bool:
    """Whether an MQTT client gets a successful CONNACK on 127.0.0.1:`port` within
    `timeout` (a NATS node answers only once JetStream can keep the session)."""
    client = paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"probe-{time.monotonic_ns()}",
        protocol=paho.MQTTv311,
    )
    client.tls_set_context(certificates.client_context())
    if login is not None:
        client.username_pw_set(*login)
    answer: list[bool] = []
    client.on_connect = lambda _c, _u, _f, code, _p=None: answer.append(not code.is_failure)
    try:
        client.connect("127.0.0.1", port, keepalive=10)
    except OSError:
        return False
    client.loop_start()
    deadline = time.monotonic() + timeout
    while not answer and time.monotonic() < deadline:
        time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    return bool(answer and answer[0])


def _filled(template: string.Template, **values: object) -> str:
    """The template with `values`; a placeholder left outside the comments is an error."""
    text = template.safe_substitute(values)
    for line in text.splitlines():
        if "${" in line and not line.lstrip().startswith("#"):
            raise ValueError(f"{NODE_TEMPLATE}: placeholder left unfilled: {line.strip()}")
    return text


@dataclass
class NatsNode:
    """One node of the cluster: its ports, folder and (while running) its process."""

    name: str
    folder: Path
    client_port: int
    cluster_port: int
    mqtt_port: int
    child: Child | None = None

    @property
    def running(self) -> bool:
        """Whether its process is alive."""
        return (
            self.child is not None
            and self.child.process is not None
            and self.child.process.poll() is None
        )


class NatsCluster:
    """Three (or `size`) `nats-server` nodes from deploy/nats/node.conf, TLS on, one login
    per home (`logins`: node id to password), JetStream and MQTT on every node."""

    def __init__(
        self,
        folder: Path,
        community_id: str,
        logins: Mapping[str, str],
        size: int = 3,
        certificates: Certificates | None = None,
    ) -> None:
        self.binary = nats_binary()
        self.folder = folder
        self.certificates = certificates or write_certificates(folder / "certs")
        self.logins = dict(logins)
        self.nodes = [
            NatsNode(f"n{i + 1}", folder / f"n{i + 1}", free_port(), free_port(), free_port())
            for i in range(size)
        ]
        template = string.Template(NODE_TEMPLATE.read_text())
        routes = ", ".join(f'"nats-route://127.0.0.1:{n.cluster_port}"' for n in self.nodes)
        users = users_config(community_id, logins)
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            (node.folder / "homes.conf").write_text(users)
            (node.folder / "node.conf").write_text(
                _filled(
                    template,
                    server_name=node.name,
                    client_listen=f"127.0.0.1:{node.client_port}",
                    cluster_listen=f"127.0.0.1:{node.cluster_port}",
                    routes=routes,
                    mqtt_listen=f"127.0.0.1:{node.mqtt_port}",
                    store_dir=node.folder / "jetstream",
                    cert_file=self.certificates.cert_file,
                    key_file=self.certificates.key_file,
                    ca_file=self.certificates.ca_file,
                )
            )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The MQTT address of every node, for a home's `community_broker: addresses:`."""
        return [("127.0.0.1", node.mqtt_port) for node in self.nodes]

    def pids(self) -> list[int]:
        """Process ids of the running nodes."""
        return [n.child.pid for n in self.nodes if n.running and n.child is not None]

    def start(self, timeout: float = 60.0) -> NatsCluster:
        """Start every node and wait until the cluster keeps MQTT sessions."""
        for index in range(len(self.nodes)):
            self.start_node(index, wait=False)
        self.wait_ready(timeout)
        return self

    def start_node(self, index: int, wait: bool = True, timeout: float = 60.0) -> None:
        """Start (or restart) node `index`; with `wait`, until it accepts MQTT sessions."""
        node = self.nodes[index]
        if node.running:
            return
        node.child = Child(
            f"nats {node.name}",
            [self.binary, "-c", str(node.folder / "node.conf")],
            node.folder / "nats.log",
        ).start()
        wait_for_port(node.mqtt_port, timeout, node.child)
        if wait:
            self.wait_node_ready(index, timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every running node gives an MQTT session (JetStream has its leaders)."""
        for index, node in enumerate(self.nodes):
            if node.running:
                self.wait_node_ready(index, timeout)

    def wait_node_ready(self, index: int, timeout: float = 60.0) -> None:
        """Until node `index` gives an MQTT client a session."""
        node = self.nodes[index]
        login = next(iter(self.logins.items()), None)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if node.child is not None:
                node.child.check_alive()
            if mqtt_ready(node.mqtt_port, self.certificates, login, timeout=2.0):
                return
            time.sleep(0.2)
        raise TimeoutError(f"NATS node {node.name} gave no MQTT session in {timeout:.0f} s")

    def kill_node(self, index: int) -> None:
        """SIGKILL node `index`: a machine lost, nothing said goodbye."""
        node = self.nodes[index]
        if node.child is not None and node.child.process is not None:
            node.child.process.send_signal(signal.SIGKILL)
            node.child.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop every node."""
        for node in self.nodes:
            if node.child is not None:
                node.child.stop()


class MosquittoBroker:
    """One Mosquitto on loopback with TLS, queuing for its clients as
    deploy/mosquitto/community.conf does."""

    def __init__(self, folder: Path, certificates: Certificates) -> None:
        self.binary = mosquitto_binary()
        self.folder = folder
        self.certificates = certificates
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            f"cafile {certificates.ca_file}\n"
            f"certfile {certificates.cert_file}\n"
            f"keyfile {certificates.key_file}\n"
            "max_queued_messages 100000\nmax_inflight_messages 100\n"
            "message_size_limit 524288\nset_tcp_nodelay true\nmax_connections -1\n"
        )
        self.child: Child | None = None

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The one address."""
        return [("127.0.0.1", self.port)]

    def pids(self) -> list[int]:
        """The broker's process id, while it runs."""
        return [self.child.pid] if self.child is not None else []

    def start(self, timeout: float = 30.0) -> MosquittoBroker:
        """Start it and wait until it gives an MQTT session."""
        self.child = Child(
            "mosquitto", [self.binary, "-c", str(self.config)], self.folder / "mosquitto.log"
        ).start()
        wait_for_port(self.port, timeout, self.child)
        deadline = time.monotonic() + timeout
        while not mqtt_ready(self.port, self.certificates, None, timeout=2.0):
            if time.monotonic() > deadline:
                raise TimeoutError("mosquitto gave no MQTT session")
        return self

    def stop(self) -> None:
        """Stop it."""
        if self.child is not None:
            self.child.stop()
            self.child = None

"""The community broker's files: a CA and a server certificate for TLS, one login per home
in a password file Mosquitto reads (`mosquitto_passwd`'s PBKDF2-SHA512 form), and an ACL
that lets each home publish only as itself.

Why the ACL has per-home lines rather than one `pattern` line: records, blocks and sync
messages carry their sender's signature, so the ledger refuses anything published under
another's name whatever the broker lets through; the presence message on
`status/<node-id>` is not signed (the broker publishes the offline one as the node's will),
so only the broker can keep a home from saying another is online or offline. A home's node
id comes from the key it creates when it joins, which the registrar learns from its signed
membership request: approving it adds that home's `status/<node-id>` line.
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hashlib
import ipaddress
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge_controller.community.files import write_private, write_public
from edge_controller.network.topics import CommunityTopics, rules_for

# mosquitto_passwd's default: PBKDF2-SHA512 with 101 iterations and a 12-byte salt.
PASSWD_ITERATIONS = 101
CERT_YEARS = 10
CA_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"
SERVER_CERT_FILE = "server.crt"
SERVER_KEY_FILE = "server.key"
PASSWD_FILE = "passwd"
ACL_FILE = "acl"
CONF_FILE = "mosquitto.conf"
PID_FILE = "mosquitto.pid"


def password_line(username: str, password: str, salt: bytes | None = None) -> str:
    """One line of a Mosquitto password file (`$7$`: PBKDF2-SHA512, as mosquitto_passwd)."""
    return f"{username}:{password_hash(password, salt)}"


def password_hash(password: str, salt: bytes | None = None) -> str:
    """A password as Mosquitto's password file keeps it: `$7$<iterations>$<salt>$<digest>`
    (a joining home sends the registrar this, never its password)."""
    salt = salt or os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PASSWD_ITERATIONS)
    encoded = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
    return f"$7${PASSWD_ITERATIONS}${encoded[0]}${encoded[1]}"


# A password hash a joining home may send: PBKDF2-SHA512 at our iterations, a 12-byte salt
# and a 64-byte digest in base64 (nothing that could break the file's line or cost the
# broker more hashing per login than ours do).
PASSWORD_HASH = re.compile(
    rf"\$7\${PASSWD_ITERATIONS}\$[A-Za-z0-9+/]{{16}}\$[A-Za-z0-9+/]{{86}}==\Z"
)


def new_password() -> str:
    """A fresh broker password: 128 random bits, URL-safe."""
    return secrets.token_urlsafe(16)


@dataclass(frozen=True)
class Login:
    """One home's broker login and, once its request is approved, its node id."""

    username: str
    registrar: bool = False
    node_id: str = ""


def acl_text(community_id: str, logins: list[Login]) -> str:
    """The ACL: each login may do what `rules_for` gives a home (the NATS cluster's
    permissions are the same rules): read the community's broadcasts and statuses and write
    records, blocks and sync messages (all signed by their sender); once approved, its own
    status and its own sync inbox only, before that every inbox (its node id is not known
    yet). It writes its own membership request topic; the registrar's home also reads and
    clears the membership requests."""
    topics = CommunityTopics(community_id)
    lines = ["# Written by energy-p2p-edge community; approving a home adds its status line."]
    for login in logins:
        rules = rules_for(topics, login.node_id or None)
        lines += ["", f"user {login.username}"]
        lines += [f"topic read {f}" for f in rules.subscribe]
        lines += [f"topic write {f}" for f in rules.publish]
        lines.append(f"topic write {topics.base}/join/{login.username}")
        if login.registrar:
            lines.append(f"topic readwrite {topics.base}/join/+")
    return "\n".join(lines) + "\n"


def mosquitto_conf(folder: Path, port: int) -> str:
    """A Mosquitto configuration for the community broker: TLS only, logins, the ACL."""
    return "\n".join(
        [
            "# The community broker of an Energy P2P community (energy-p2p-edge community found).",
            "# Run it with: mosquitto -c " + str(folder / CONF_FILE),
            "# After approving a home, reload it (SIGHUP, e.g. systemctl reload mosquitto);",
            "# a registrar's edge controller on this machine does it by itself (pid_file).",
            "# The files here are the founder's: the broker runs as the founder's user (on a",
            "# dedicated machine, chown them to mosquitto and remove this line).",
            f"user {getpass.getuser()}",
            "per_listener_settings false",
            f"pid_file {folder / PID_FILE}",
            f"listener {port}",
            f"cafile {folder / CA_FILE}",
            f"certfile {folder / SERVER_CERT_FILE}",
            f"keyfile {folder / SERVER_KEY_FILE}",
            "tls_version tlsv1.2",
            "allow_anonymous false",
            f"password_file {folder / PASSWD_FILE}",
            f"acl_file {folder / ACL_FILE}",
            "message_size_limit 524288",
            "max_queued_messages 100000",
            "",
        ]
    )


def write_tls(folder: Path, host: str, now: datetime.datetime) -> None:
    """A CA (its key stays in `folder`) and a server certificate for `host` signed by it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Energy P2P community CA")])
    until = now + datetime.timedelta(days=365 * CERT_YEARS)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    private = serialization.PrivateFormat.PKCS8
    none = serialization.NoEncryption()
    write_private(folder / CA_KEY_FILE, ca_key.private_bytes(pem, private, none))
    write_private(folder / SERVER_KEY_FILE, server_key.private_bytes(pem, private, none))
    write_public(folder / CA_FILE, ca.public_bytes(pem))
    write_public(folder / SERVER_CERT_FILE, server.public_bytes(pem))

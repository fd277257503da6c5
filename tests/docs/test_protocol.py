"""docs/protocol.md cannot drift from the code: its examples are built and checked here.

Every fenced block whose info string names a kind of example is read (conventions at the
top of the document): the genesis example founds a real ledger, every `json record`
example is signed with real Ed25519 keys and submitted in document order (accepted, or
refused with the reason it names) and sealed into a block, and the canonical JSON,
signature and block hash examples are recomputed byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest

from edge_controller.ledger import (
    Genesis,
    Header,
    KeyPair,
    Ledger,
    Reason,
    Rejected,
    genesis_entry,
    record_root,
    sign_record,
    signing_message,
)
from edge_controller.ledger.block import block_message
from edge_controller.ledger.canonical import canonical_bytes
from edge_controller.ledger.records import KINDS
from edge_controller.network.envelope import Envelope, EnvelopeAuth, signed_bytes
from edge_controller.network.topics import CommunityTopics, MessageKind

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.DOTALL | re.MULTILINE)
_PLACEHOLDER = re.compile(r"<(key|account|id|block-sig):([^>]+)>\Z")


def examples(kind: str) -> list[str]:
    """The contents of the document's fenced blocks whose info string is `kind`, in order."""
    text = DOCUMENT.read_text(encoding="utf-8")
    return [body for info, body in _FENCE.findall(text) if info.strip() == kind]


def one_example(kind: str) -> str:
    found = examples(kind)
    assert len(found) == 1, f"docs/protocol.md needs exactly one `{kind}` block"
    return found[0]


def key_of(name: str) -> KeyPair:
    """The document's key convention: NAME's Ed25519 seed is SHA-256 of its UTF-8 bytes."""
    return KeyPair.from_seed(name.encode())


def fields(block: str) -> dict[str, str]:
    """A `name: value` per line (a value may not hold a newline)."""
    out: dict[str, str] = {}
    for line in block.splitlines():
        if line.strip():
            name, _, value = line.partition(":")
            out[name.strip()] = value.strip()
    return out


class Resolver:
    """Replaces the document's placeholders with real keys, accounts and record ids."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        if isinstance(value, dict):
            resolved = {k: self(v) for k, v in value.items()}
            sig = value.get("sig")
            if isinstance(sig, str) and sig.startswith("<block-sig:"):
                # Evidence quotes a header with its sealer's signature of the header hash.
                header = Header.from_json(resolved["header"])
                resolved["sig"] = key_of(sig[11:-1]).sign(block_message(header.hash)).hex()
            return resolved
        if isinstance(value, list):
            return [self(v) for v in value]
        if isinstance(value, str):
            match = _PLACEHOLDER.match(value)
            if match is None:
                return value
            what, name = match.groups()
            if what == "key":
                return key_of(name).public_hex
            if what == "account":
                return key_of(name).account
            if what == "id":
                assert name in self.ids, f"<id:{name}> names no earlier record example"
                return self.ids[name]
            return value  # a block signature, filled in by its enclosing object
        return value


def the_genesis() -> Genesis:
    return Genesis.from_json(Resolver()(json.loads(one_example("json genesis"))))


def test_the_genesis_example_gives_the_community_id_the_document_states() -> None:
    genesis = the_genesis()
    stated = fields(one_example("text community"))
    assert genesis.community_id == stated["community id"]
    _, entry = genesis_entry(genesis)
    assert entry.hash == stated["genesis block hash"]
    assert hashlib.sha256(canonical_bytes(genesis.to_json())).hexdigest()[:32] == (
        genesis.community_id
    )


def test_canonical_json_examples_encode_byte_for_byte() -> None:
    inputs, outputs = examples("json canonical"), examples("text canonical-bytes")
    assert inputs and len(inputs) == len(outputs)
    for source, expected in zip(inputs, outputs, strict=True):
        encoded = canonical_bytes(json.loads(source))
        assert encoded == expected.rstrip("\n").encode("utf-8")


def test_the_signature_example_is_recomputed_byte_for_byte() -> None:
    stated = fields(one_example("text signature"))
    genesis = the_genesis()
    key = key_of(stated["signer name"])
    body = json.loads(stated["body"])
    assert stated["community"] == genesis.community_id
    assert stated["seed"] == hashlib.sha256(stated["signer name"].encode()).hexdigest()
    assert stated["public key"] == key.public_hex
    assert stated["account"] == key.account
    digest = hashlib.sha256(bytes.fromhex(key.public_hex)).hexdigest()
    assert stated["account"] == "ep" + digest[:40]
    assert stated["body bytes"] == canonical_bytes(body).decode()
    message = signing_message(genesis.community_id, key.public_hex, canonical_bytes(body))
    assert stated["signed bytes (hex)"] == message.hex()
    record = sign_record(key, genesis.community_id, body)
    assert stated["record id"] == record.id == hashlib.sha256(message).hexdigest()
    assert stated["signature"] == record.sig.hex()


def test_the_block_example_is_recomputed() -> None:
    stated = fields(one_example("text block"))
    ids = json.loads(stated["record ids"])
    assert stated["record root"] == record_root(ids)
    header = Header.from_json(json.loads(stated["header"]))
    assert header.root == stated["record root"]
    without_nonce = {k: v for k, v in header.to_json().items() if k != "nonce"}
    assert stated["header without nonce"] == canonical_bytes(without_nonce).decode()
    assert stated["prefix"] == hashlib.sha256(canonical_bytes(without_nonce)).hexdigest()
    assert stated["block hash"] == header.hash
    assert stated["signed bytes (hex)"] == block_message(header.hash).hex()
    sealer = key_of(stated["sealer name"])
    assert header.sealer == sealer.public_hex
    assert stated["signature"] == sealer.sign(block_message(header.hash)).hex()
    assert stated["empty root"] == record_root([])


def test_the_envelope_example_is_recomputed() -> None:
    stated = fields(one_example("text envelope"))
    genesis = the_genesis()
    key = key_of(stated["sender name"])
    body = json.loads(stated["body"])
    topic = CommunityTopics(genesis.community_id).sync(key_of(stated["to name"]).account)
    assert stated["topic"] == topic
    envelope = Envelope.wrap(MessageKind.SYNC, key.account, body)
    assert stated["id"] == envelope.message_id
    signed = signed_bytes(topic, key.account, envelope.message_id)
    assert stated["signed bytes (hex)"] == signed.hex()
    auth = EnvelopeAuth(key.public_hex, key.sign(signed))
    wire = Envelope(envelope.kind, envelope.message_id, key.account, body, auth).encode()
    assert stated["envelope"] == wire.decode()


def test_every_record_example_is_accepted_by_a_real_ledger_in_document_order() -> None:
    genesis = the_genesis()
    clock = [genesis.time]
    ledger = Ledger(genesis, clock=lambda: clock[0])
    # Every named key: a `sealer` record may add any of them to the turns.
    sealers = {key_of(n).public_hex: key_of(n) for n in _names(DOCUMENT.read_text())}
    resolve = Resolver()
    kinds: set[str] = set()
    refused: set[str] = set()
    blocks: list[str] = examples("json record")
    assert blocks, "docs/protocol.md has no record examples"
    for n, source in enumerate(blocks, 1):
        example = json.loads(source)
        assert set(example) <= {"signer", "label", "body", "refused"}, f"example {n}"
        body = resolve(example["body"])
        record = sign_record(key_of(example["signer"]), genesis.community_id, body)
        clock[0] = body["time"]
        if "refused" in example:
            with pytest.raises(Rejected) as caught:
                ledger.submit(record.to_wire())
            assert caught.value.reason == Reason(example["refused"]), f"example {n}: {caught.value}"
            refused.add(example["refused"])
            continue
        try:
            ledger.submit(record.to_wire())
        except Rejected as exc:
            pytest.fail(f"record example {n} ({body['kind']}) refused: {exc}")
        sealer = next(k for k in sealers.values() if ledger.first_in_line(k))
        block = ledger.build_block(sealer, now=body["time"])
        assert block is not None and [r.id for r in block.records] == [record.id], n
        ledger.add_block(block.to_wire(), now=body["time"])
        assert ledger.is_recorded(record.id), f"example {n} is not in the chain"
        kinds.add(body["kind"])
        if "label" in example:
            resolve.ids[example["label"]] = record.id
    assert kinds == set(KINDS), f"kinds without an accepted example: {set(KINDS) - kinds}"
    assert refused, "the document shows no refused record"


def _names(source: str) -> set[str]:
    return set(re.findall(r"<key:([^>]+)>", source))


def test_every_reason_code_is_in_the_documents_table() -> None:
    text = DOCUMENT.read_text(encoding="utf-8")
    section = text.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE))
    missing = {r.value for r in Reason} - listed
    assert not missing, f"docs/protocol.md's reason table lacks {sorted(missing)}"
    assert listed <= {r.value for r in Reason}, f"not reasons: {listed - {r.value for r in Reason}}"

"""The configuration file is checked before anything starts, every mistake with its path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge_controller.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "deploy" / "edge.yaml"


def sample_document(tmp_path: Path) -> dict:
    document = yaml.safe_load(SAMPLE.read_text())
    genesis = tmp_path / "genesis.json"
    genesis.write_text("{}")
    password = tmp_path / "password"
    password.write_text("s3cret\n")
    document["genesis"] = str(genesis)
    document["data_dir"] = str(tmp_path / "data")
    document["community_broker"]["password_file"] = str(password)
    return document


def test_the_sample_configuration_in_the_repository_is_valid(tmp_path: Path) -> None:
    config = parse_config(sample_document(tmp_path), "edge.yaml", tmp_path)
    assert config.name == "Alice's house"
    assert config.community_broker.password == "s3cret"
    assert config.community_broker.tls_ca_file is not None
    assert [d.role for d in config.devices] == ["pv", "battery", "grid_meter", "meter"]
    assert config.devices[0].profile.name.startswith("opendtu:")
    assert config.policy.sell.battery is not None
    assert config.policy.sell.battery.enable_soc_percent == 85
    assert config.api.port == 8780 and config.sealer is None


def test_every_mistake_is_reported_with_its_path(tmp_path: Path) -> None:
    document = sample_document(tmp_path)
    document["api"]["port"] = 70_000
    document["sealer"] = "sometimes"
    document["colour"] = "green"
    document["devices"][0]["role"] = "toaster"
    document["devices"][1]["profile"]["battery_capacity_wh"] = "big"
    document["policy"]["sell"]["battery"]["disable_soc_percent"] = 95
    with pytest.raises(ConfigError) as info:
        parse_config(document, "edge.yaml", tmp_path)
    problems = "\n".join(info.value.problems)
    for path in (
        "api.port",
        "sealer",
        "colour",
        "devices[0].role",
        "devices[1].profile.battery_capacity_wh",
        "policy.sell.battery.disable_soc_percent",
    ):
        assert path in problems, problems
    assert len(info.value.problems) == 6


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "edge.yaml"
    path.write_text("name: x\ndevices: [\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "line" in info.value.problems[0]


def test_run_with_a_bad_file_exits_non_zero_without_touching_the_ledger(tmp_path: Path) -> None:
    document = sample_document(tmp_path)
    document["api"]["port"] = "eighty"
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [sys.executable, "-m", "edge_controller", "run", "-c", str(path)],
        capture_output=True,
        check=False,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    assert "api.port: expected an integer" in result.stderr
    assert not (tmp_path / "data").exists()


def test_the_ledger_section_keeps_history_and_says_how_to_join(tmp_path: Path) -> None:
    config = parse_config(sample_document(tmp_path), "edge.yaml", tmp_path)
    assert (config.history.history_months, config.history.archive) == (13, False)
    assert config.history.join == "snapshot"
    document = sample_document(tmp_path)
    document["ledger"] = {"history_months": 0, "archive": "yes", "join": "download"}
    with pytest.raises(ConfigError) as info:
        parse_config(document, "edge.yaml", tmp_path)
    problems = "\n".join(info.value.problems)
    for path in ("ledger.history_months", "ledger.archive", "ledger.join"):
        assert path in problems, problems
    document = sample_document(tmp_path)
    document["ledger"] = {"archive": True, "join": "replay"}
    config = parse_config(document, "edge.yaml", tmp_path)
    assert config.history.archive and config.history.join == "replay"


def test_the_community_broker_takes_the_addresses_of_a_cluster(tmp_path: Path) -> None:
    document = sample_document(tmp_path)
    broker = document["community_broker"]
    del broker["host"], broker["port"]
    broker["addresses"] = [{"host": "nats-1", "port": 8883}, {"host": "nats-2"}]
    settings = parse_config(document, "edge.yaml", tmp_path).community_broker
    assert settings.addresses == (("nats-1", 8883), ("nats-2", 1883))
    assert settings.password == "s3cret"


def test_mistakes_in_the_addresses_are_named_with_their_paths(tmp_path: Path) -> None:
    document = sample_document(tmp_path)
    broker = document["community_broker"]
    del broker["host"], broker["port"]
    broker["addresses"] = [{"host": "nats-1", "port": 8883}, {"port": 70_000}]
    with pytest.raises(ConfigError) as info:
        parse_config(document, "edge.yaml", tmp_path)
    assert info.value.problems == [
        "community_broker.addresses[1].host: required",
        "community_broker.addresses[1].port: expected an integer from 1 to 65535",
    ]
    broker["addresses"] = [{"host": "nats-1", "port": 8883}, {"host": "nats-1", "port": 8883}]
    with pytest.raises(ConfigError) as info:
        parse_config(document, "edge.yaml", tmp_path)
    assert info.value.problems == ["community_broker.addresses[1]: nats-1:8883 is listed twice"]
    broker["host"], broker["addresses"] = "nats-1", [{"host": "nats-1"}]
    with pytest.raises(ConfigError) as info:
        parse_config(document, "edge.yaml", tmp_path)
    assert info.value.problems == [
        "community_broker.addresses: give either host and port or addresses, not both"
    ]

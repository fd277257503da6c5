"""The demo's Home Assistant configuration and its command line, without starting anything:
`scripts/demo --help` answers before anything is installed, with the whole description;
the configuration written has no `http:` in YAML (a repair since 2026.10) and skips
onboarding's default integrations (they fail without the internet)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import yaml

from edge_controller.demo.hass import write_config
from edge_controller.processes import CHECKOUT


def test_help_comes_first_and_whole(tmp_path: Path) -> None:
    # No python3 but the system's, no tools on PATH to install with: help needs neither.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [str(CHECKOUT / "scripts" / "demo"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: scripts/demo")
    assert "Energy dashboard" in done.stdout
    assert "Ctrl-C stops\neverything." in done.stdout
    assert "--without-hass" in done.stdout
    assert not (tmp_path / ".cache").exists()


def test_the_configuration_moves_http_to_storage_and_skips_default_integrations(
    tmp_path: Path,
) -> None:
    config = tmp_path / "ha"
    write_config(config, 18123, "127.0.0.1")
    written = yaml.safe_load((config / "configuration.yaml").read_text())
    assert "http" not in written
    assert "energy" in written
    http = json.loads((config / ".storage" / "http").read_text())
    assert http["data"]["stable"]["server_port"] == 18123
    assert http["data"]["stable"]["server_host"] == ["127.0.0.1"]
    assert http["data"]["yaml_migration_done"] is True
    assert os.stat(config / ".storage" / "http").st_mode & 0o077 == 0
    onboarding = json.loads((config / ".storage" / "onboarding").read_text())
    assert onboarding["data"]["done"] == ["core_config"]

    # Started again on another port: the stored settings follow, onboarding is kept.
    (config / ".storage" / "onboarding").write_text(
        json.dumps({**onboarding, "data": {"done": ["user", "core_config"]}})
    )
    write_config(config, 18124, "0.0.0.0")
    http = json.loads((config / ".storage" / "http").read_text())
    assert http["data"]["stable"]["server_port"] == 18124
    assert http["data"]["stable"]["server_host"] == ["0.0.0.0"]
    kept = json.loads((config / ".storage" / "onboarding").read_text())
    assert kept["data"]["done"] == ["user", "core_config"]

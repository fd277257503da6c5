"""`energy-p2p-edge devices ...`: find out what a device exposes, list the templates.

- `devices probe HOST[:PORT] [--unit N]` scans the SunSpec models of a Modbus TCP device
  and prints a ready `devices:` entry for `edge.yaml`;
- `devices templates` lists the catalogue `template: NAME` draws from.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import yaml

from edge_controller.devices.sunspec import devices_entry, probe
from edge_controller.devices.sunspec_models import SunSpecError
from edge_controller.devices.templates import listing

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_devices(subparsers: Any) -> None:
    """Register `devices probe` and `devices templates`."""
    parser = subparsers.add_parser("devices", help="probe a device, list device templates")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    scan = actions.add_parser(
        "probe",
        help="scan a SunSpec device on Modbus TCP and print a devices: entry",
        description="Read the SunSpec model list of a Modbus TCP device and print the "
        "models found and a devices: entry for edge.yaml.",
    )
    scan.add_argument("address", metavar="HOST[:PORT]", help="the device (port 502 if not given)")
    scan.add_argument("--unit", type=int, default=1, help="Modbus unit id (default 1)")
    scan.add_argument("--timeout", type=float, default=3.0, help="seconds per request")
    scan.set_defaults(run=run_probe)
    templates = actions.add_parser("templates", help="list the device templates")
    templates.set_defaults(run=run_templates)


def run_templates(args: argparse.Namespace) -> int:
    """Print the template catalogue."""
    print(listing())
    return EXIT_OK


def run_probe(args: argparse.Namespace) -> int:
    """Probe the device and print what it has; exit 1 with the reason when it fails."""
    host, _, port_text = (
        str(args.address).rpartition(":") if ":" in args.address else (args.address, "", "502")
    )
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535 or not host:
        print(f"energy-p2p-edge: error: {args.address!r} is not HOST[:PORT]", file=sys.stderr)
        return EXIT_USAGE
    if not 0 <= args.unit <= 247:
        print("energy-p2p-edge: error: --unit must be 0 to 247", file=sys.stderr)
        return EXIT_USAGE
    port = int(port_text)
    try:
        found = asyncio.run(probe(host, port, args.unit, args.timeout))
    except SunSpecError as error:
        print(f"energy-p2p-edge: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(describe(host, port, args.unit, found))
    return EXIT_OK


def describe(host: str, port: int, unit: int, found: dict[str, Any]) -> str:
    """The probe's findings in words, then the `devices:` entry."""
    common = found["common"]
    who = " ".join(str(common[k]) for k in ("Mn", "Md") if common.get(k)) or "unknown maker"
    lines = [f"SunSpec device at {host}:{port} unit {unit}: {who}"]
    if common.get("SN"):
        lines[0] += f", serial {common['SN']}"
    if common.get("Vr"):
        lines[0] += f", version {common['Vr']}"
    lines.append("models:")
    for model in found["models"]:
        lines.append(
            f"  {model['id']:>4}  {model['name']:<24} at {model['address']} "
            f"({model['length']} registers)"
        )
    entries = devices_entry(host, port, unit, found)
    if not entries:
        lines.append("No model the edge controller reads (inverter, storage, meter).")
        return "\n".join(lines)
    lines.append("")
    lines.append("# Paste into edge.yaml; set each resource to the id your registrar certified.")
    lines.append(yaml.safe_dump({"devices": entries}, sort_keys=False).rstrip())
    return "\n".join(lines)

"""`energy-p2p-edge run`: one home's edge controller as a long-running service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from edge_controller.aio import cancel_and_wait
from edge_controller.api import Advertiser, ApiServer
from edge_controller.api.community import COMMUNITY_KEY
from edge_controller.app.home import API_VERSION, Home
from edge_controller.app.identity import load_or_create_token
from edge_controller.community import CommunityService
from edge_controller.community.waiting import read_document, unjoined, wait_for_invitation
from edge_controller.config import ConfigError, HomeConfig, load_config
from edge_controller.ledger import Ledger, StorageError

log = logging.getLogger(__name__)

# The exit code when the ledger cannot be used as stored (damaged, or the disk refuses it).
EXIT_STORAGE = 3


async def run_home(config: HomeConfig, usb_backend: Any = None) -> int:
    """Start the home, its API and its zeroconf announcement; stop cleanly on SIGTERM/SIGINT
    (within about 2 s). `usb_backend` is the pyusb backend of its USB hub (libusb when None)."""
    # Everything the daemon creates (databases, WAL files, logs) is its own alone.
    os.umask(0o077)
    home = Home.from_config(config, usb_backend=usb_backend)
    token = load_or_create_token(config.path(config.api.token_file))
    api = ApiServer(home, token, config.api.host, config.api.port)
    community = CommunityService(
        node=home.node,
        data_dir=config.data_dir,
        broker=config.community_broker,
        registrar_dir=config.registrar_dir,
    )
    api.app[COMMUNITY_KEY] = community
    advertiser = Advertiser(home.account, config.name, config.api.port, API_VERSION)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await home.start()
    checked = asyncio.ensure_future(_check_after_start(home.ledger))
    try:
        await community.start()
        await api.start()
        if config.api.zeroconf:
            await advertiser.start()
        log.info(
            "%s is up: account %s, API %s, ledger height %d",
            config.name,
            home.account,
            api.url,
            home.ledger.height,
        )
        print(f"ready {api.url} {home.account}", flush=True)
        await _until_stopped(stop, checked)
    finally:
        # USB ports first: nothing may charge unmetered while the rest stops; then the
        # WebSocket clients are told and closed, so none holds the API server open.
        started = time.monotonic()
        log.info("stopping %s", config.name)
        if not checked.done():  # its thread reads the ledger the home closes
            await cancel_and_wait(checked)
        await home.switch_off()
        await api.stop()
        await advertiser.stop()
        await community.stop()
        await home.stop()
        log.info("%s stopped in %.2f s", config.name, time.monotonic() - started)
    return 0


async def _check_after_start(ledger: Ledger) -> None:
    """The ledger's start-up damage check left for after start (the finished state rows,
    which a start does not read), on a thread while the home runs; a damage it finds is
    raised, to stop the home as a damaged ledger at start does."""
    stop = threading.Event()
    started = time.monotonic()
    work = asyncio.ensure_future(asyncio.to_thread(ledger.check_after_start, stop))
    try:
        await asyncio.shield(work)
    except asyncio.CancelledError:
        stop.set()  # the thread ends within a page of rows
        with contextlib.suppress(Exception):
            await work
        raise
    log.info("ledger: stored state intact (checked in %.1f s)", time.monotonic() - started)


async def _until_stopped(stop: asyncio.Event, checked: asyncio.Future[Any]) -> None:
    """Until SIGTERM or SIGINT; raises what the check after start found, if it failed."""
    stopping: asyncio.Future[Any] = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({stopping, checked}, return_when=asyncio.FIRST_COMPLETED)
        if checked.done() and not checked.cancelled() and (error := checked.exception()):
            raise error
        await stopping
    finally:
        stopping.cancel()


async def _until_joined(path: Path, document: dict[str, Any]) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    return await wait_for_invitation(path, document, stop)


def setup_logging(verbose: bool) -> None:
    """INFO for the edge controller (DEBUG with -v); only warnings from libraries."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("amqtt", "transitions", "aiomqtt", "zeroconf", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_from_file(path: Path, verbose: bool = False) -> int:
    """`energy-p2p-edge run -c FILE`: check the file, then run until stopped. A file that
    names no community yet first waits for an invitation through the API."""
    document = read_document(path)
    if unjoined(document):
        setup_logging(verbose)
        if not asyncio.run(_until_joined(path, document)):
            return 0
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(f"energy-p2p-edge: {exc}", file=sys.stderr)
        return 2
    setup_logging(verbose)
    try:
        return asyncio.run(run_home(config))
    except StorageError as exc:
        # A damaged ledger, or a disk that refuses the first write: one line, no traceback.
        print(f"energy-p2p-edge: {exc.message}", file=sys.stderr)
        return EXIT_STORAGE

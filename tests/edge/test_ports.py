"""Choosing loopback ports for the services a demo, a benchmark or a test starts."""

from __future__ import annotations

import socket

from edge_controller.processes import free_port


def test_ports_chosen_before_anything_binds_them_are_all_different() -> None:
    # A layout chooses the broker's port and every home's API port before it starts any of
    # them; nothing listens on an earlier choice yet, so only memory keeps them apart.
    chosen = [free_port() for _ in range(500)]
    assert len(set(chosen)) == len(chosen)


def test_a_preferred_port_is_kept_when_free_and_replaced_when_taken() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        assert free_port(taken) != taken
    port = free_port()
    assert free_port(port) == port

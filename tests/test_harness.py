"""Loopback ports that no other socket takes first, for the tests and for the dashboards'
child processes alike (one ``free_port``, in ``traindash.ui.processes``)."""

from __future__ import annotations

import socket

from tests import harness
from traindash.ui import processes


def test_free_port_is_below_the_ephemeral_range_and_never_repeats() -> None:
    assert harness.free_port is processes.free_port
    ports = [processes.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(p in processes.ports_below_ephemeral() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        # the kernel's own pick lies above
        assert s.getsockname()[1] not in processes.ports_below_ephemeral()


def test_free_port_skips_a_port_in_use(monkeypatch) -> None:
    taken, free = processes.free_port(), processes.free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        monkeypatch.setattr(processes, "ports_below_ephemeral", lambda: [taken, free])
        monkeypatch.setattr(processes, "_next_port", iter([0, 1]))
        assert processes.free_port() == free

"""The test harness's own promises: loopback ports that no other socket takes first."""

from __future__ import annotations

import socket

from tests import harness


def test_free_port_is_below_the_ephemeral_range_and_never_repeats() -> None:
    ports = [harness.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(p in harness._PORTS for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert s.getsockname()[1] not in harness._PORTS  # the kernel's own pick lies above


def test_free_port_skips_a_port_in_use(monkeypatch) -> None:
    taken, free = harness.free_port(), harness.free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", taken))
        monkeypatch.setattr(harness, "_PORTS", [taken, free])
        monkeypatch.setattr(harness, "_next_port", iter([0, 1]))
        assert harness.free_port() == free

"""Is a collector there? A logger's two connections, seen through ZeroMQ's socket monitor.

A missing ack says nothing about why it is missing: a collector that is busy committing
and one that does not exist look the same from the ack stream. The connections do not:
ZeroMQ completes the ZMTP handshake on its own I/O thread, so a collector whose writer
is busy still shakes hands, while with nobody listening (or a peer that is not a
collector, or refused CURVE keys) no handshake ever succeeds. The logger counts as
connected while both its PUB (ingest) and SUB (rows, for acks) sockets have a completed
handshake and no disconnect since.
"""

from __future__ import annotations

import time
from typing import cast

import zmq
from zmq.utils.monitor import recv_monitor_message

CONNECTED = "connected"
NOT_LISTENING = "not listening"

_UP = int(zmq.EVENT_HANDSHAKE_SUCCEEDED)
_DOWN = int(zmq.EVENT_DISCONNECTED)
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class Link:
    """The handshake state of a logger's ingest and rows connections."""

    def __init__(self, *sockets: zmq.Socket) -> None:
        self._monitors = [(sock, sock.get_monitor_socket(_UP | _DOWN)) for sock in sockets]
        self._up = [False] * len(sockets)
        self.connected = False
        # When the link was last not connected (its creation, or the last disconnect).
        self.lost_at = time.monotonic()

    def poll(self, now: float) -> bool:
        """Read pending monitor events; True when the link has just become connected."""
        for i, (_sock, monitor) in enumerate(self._monitors):
            while cast(int, monitor.get(_EVENTS)) & _POLLIN:
                event = recv_monitor_message(monitor, zmq.NOBLOCK)["event"]
                self._up[i] = event == _UP
        was = self.connected
        self.connected = all(self._up)
        if was and not self.connected:
            self.lost_at = now
        return self.connected and not was

    @property
    def state(self) -> str:
        """``CONNECTED`` or ``NOT_LISTENING`` (nobody completed a handshake)."""
        return CONNECTED if self.connected else NOT_LISTENING

    def close(self) -> None:
        for sock, monitor in self._monitors:
            try:
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            monitor.close(0)

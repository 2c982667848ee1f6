"""One committed-rows subscriber per ui process, fanning out to per-session buffers.

The feed thread owns the ZeroMQ SUB socket; sessions never touch it. Each session holds
a :class:`SessionBuffer` and drains it on its own document's thread (a periodic
callback), so Bokeh models are only changed where Bokeh allows it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

import zmq

from traindash import security, wire

log = logging.getLogger(__name__)

POLL_MS = 100
# Sections a session may fall behind by before it is told to reload instead.
MAX_BUFFERED_SECTIONS = 10_000


class SessionBuffer:
    """Rows waiting for one browser session; ``overflowed`` means some were dropped."""

    def __init__(self, max_sections: int = MAX_BUFFERED_SECTIONS) -> None:
        self._lock = threading.Lock()
        self._items: deque[wire.Rows] = deque()
        self._max = max_sections
        self.overflowed = False

    def put(self, rows: wire.Rows) -> None:
        with self._lock:
            if len(self._items) >= self._max:
                self._items.popleft()
                self.overflowed = True
            self._items.append(rows)

    def drain(self) -> tuple[list[wire.Rows], bool]:
        """Everything buffered so far, and whether anything was dropped since the last drain."""
        with self._lock:
            items, lost = list(self._items), self.overflowed
            self._items.clear()
            self.overflowed = False
        return items, lost


class RowsFeed(threading.Thread):
    """Subscribes to the collector's rows socket and copies each section to every session."""

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None) -> None:
        super().__init__(name="traindash-rows-feed", daemon=True)
        self.endpoint = endpoint
        self.ctx = ctx or zmq.Context.instance()
        self._sessions: set[SessionBuffer] = set()
        self._lock = threading.Lock()
        self.should_exit = threading.Event()
        self.connected = threading.Event()
        self.received = 0
        self.malformed = 0

    def register(self) -> SessionBuffer:
        buf = SessionBuffer()
        with self._lock:
            self._sessions.add(buf)
        return buf

    def unregister(self, buf: SessionBuffer) -> None:
        with self._lock:
            self._sessions.discard(buf)

    @property
    def session_count(self) -> int:
        with self._lock:
            return len(self._sessions)

    def run(self) -> None:
        sock = self.ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        security.secure_client(sock)  # CURVE keys from TRAINDASH_CURVE_* when configured
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SUBSCRIBE, wire.rows_topic())
        sock.connect(self.endpoint)
        self.connected.set()
        try:
            while not self.should_exit.is_set():
                if not sock.poll(POLL_MS):
                    continue
                while True:
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    self._dispatch(frames)
        finally:
            sock.close(0)

    def _dispatch(self, frames: list[bytes]) -> None:
        try:
            msg = wire.decode(frames)
        except wire.WireError as exc:
            self.malformed += 1
            log.warning("skipping a malformed rows message: %s", exc)
            return
        if not isinstance(msg, wire.Rows):
            return
        self.received += len(msg.section)
        with self._lock:
            sessions = list(self._sessions)
        for buf in sessions:
            buf.put(msg)

    def stop(self, timeout: float = 2.0) -> None:
        self.should_exit.set()
        if self.is_alive():
            self.join(timeout)

"""The process sender, the training process's side: hands records to a shipper process.

With ``sender="process"`` the training thread copies each record into a shared-memory
ring (:mod:`traindash.producer.ring`) and is done. :class:`ShipperClient` starts the
shipper process (:mod:`traindash.producer.shipper`), which reads the ring and does the
rest, and asks it for statistics, flushes and the stop, in the messages of
:mod:`traindash.producer.shipper_protocol`. A shipper that dies is started again and picks
up at the ring's tail.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import subprocess
import sys
import threading
import weakref
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import traindash
from traindash.config import ProducerConfig
from traindash.producer import ring, snapshot
from traindash.producer.shipper_protocol import STATS_METHODS, Reply, Request, Setup
from traindash.producer.spool import load_last_seq, spool_path

log = logging.getLogger("traindash.producer")

SPOOL_COMPACT_BYTES = 4 * 1024 * 1024
MAX_RESTARTS = 5
# What the shipper process runs, with ``python -c``.
_ENTRY = "import sys; from traindash.producer.shipper import main; sys.exit(main(sys.argv))"
# How long a request may wait for its answer beyond its own timeout.
REPLY_GRACE = 30.0


class ShipperGone(RuntimeError):
    """The shipper process ended and could not be started again."""


class ShipperClient:
    """The training process's side of the process sender; the logger's ``_sender``."""

    def __init__(
        self,
        run_id: str,
        config: ProducerConfig,
        output_dir: Path,
        host: str,
        pid: int,
        last_seq: int,
        *,
        experiment_name: str,
        history_size: int,
        auto_save_interval: int,
        buffer_size: int = 100,
        capacity: int = ring.DEFAULT_CAPACITY,
    ) -> None:
        self.run_id, self.config, self.output_dir = run_id, config, output_dir
        self.spool_path = spool_path(output_dir, run_id)
        self._setup = Setup(
            run_id=run_id,
            config=config,
            output_dir=output_dir,
            host=host,
            pid=pid,
            experiment_name=experiment_name,
            history_size=history_size,
            auto_save_interval=auto_save_interval,
            buffer_size=buffer_size,
            auto_save_min_interval=snapshot.AUTO_SAVE_MIN_INTERVAL,
            spool_compact_bytes=SPOOL_COMPACT_BYTES,
            last_seq=last_seq,
        )
        self._fd = ring.create(capacity)
        self.queue = ring.RingWriter(self._fd, on_full=self._check_alive)
        self._lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self._left = 0
        self._stop_timeout = config.close_timeout
        self.collector_state = ""  # the shipper's last word on it, when it stops
        self.restarts = 0
        self.owner = os.getpid()
        self.forked = False
        me = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _after_fork(me))

    # -- the Sender interface the logger uses ---------------------------------------------
    def start(self) -> None:
        self._spawn()

    def drain(self) -> None:
        """Nothing to do here: the shipper reads the ring before answering any request."""

    def flush(self, timeout: float) -> bool:
        try:
            return bool(self.call(Request.FLUSH, timeout, timeout=timeout))
        except ShipperGone:
            return False

    @property
    def pending(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self._left
        try:
            return int(self.call(Request.PENDING, timeout=5.0))
        except (ShipperGone, TimeoutError):
            return self._left

    def stop(self, timeout: float) -> None:
        self._stop_timeout = timeout
        if self.forked:
            return
        with self._lock:
            try:
                self._check_alive()
                assert self.conn is not None
                self.conn.send((Request.STOP, timeout))
            except OSError:
                pass  # it just died: join() starts another to finish
            except ShipperGone as exc:
                self._give_up(exc)

    def join(self) -> None:
        """Wait for the stopping shipper to finish; start another if it dies first."""
        timeout = self._stop_timeout
        with self._lock:
            while self.conn is not None and self.proc is not None:
                try:
                    if self.conn.poll(timeout + REPLY_GRACE):
                        status, value, *state = self.conn.recv()
                        if status is Reply.OK:
                            self._left = int(value)
                            self.collector_state = state[0] if state else ""
                    else:
                        log.warning(
                            "traindash: the shipper of run %s did not finish within %.0f s; stopping it",
                            self.run_id,
                            timeout + REPLY_GRACE,
                        )
                    break
                except (EOFError, OSError):
                    self._wait_dead()
                try:
                    self._check_alive()
                    self.conn.send((Request.STOP, timeout))
                except (ShipperGone, OSError) as exc:
                    self._give_up(exc)
            self._close()

    def _give_up(self, exc: Exception) -> None:
        if self.conn is None:
            return
        unread: list[Any] = []
        ring.RingReader(self._fd).read_into(unread)
        log.error(
            "traindash: could not stop the shipper of run %s (%s); the %d records it had not read are lost",
            self.run_id,
            exc,
            len(unread),
        )
        self._close()

    def _close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=REPLY_GRACE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            self.queue.close()
            os.close(self._fd)

    def forget_after_fork(self) -> None:
        """In a forked child: leave the parent's shipper, socket and ring alone."""
        self.forked = True
        if self.conn is not None:
            # The child's copy of the socket would keep the shipper from seeing the
            # training process die.
            self.conn.close()
            self.conn = None
        self.proc = None
        self._lock = threading.RLock()  # it may have been held by another thread at fork
        self.queue.detach(
            lambda: log.warning(
                "traindash: process %d was forked from process %d, which logs run %s; records "
                "logged here are dropped. Create a MetricsLogger in the child to log from it.",
                os.getpid(),
                self.owner,
                self.run_id,
            )
        )

    def is_alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- requests ---------------------------------------------------------------------------
    def call(self, request: Request, *args: Any, timeout: float = 0.0) -> Any:
        """Send one request and wait for its answer (re-starting a dead shipper once)."""
        if self.forked:
            raise ShipperGone(
                f"run {self.run_id} is logged by process {self.owner}; a process "
                "forked from it cannot use its logger (create one in the child)"
            )
        with self._lock:
            for attempt in (0, 1):
                self._check_alive()
                assert self.conn is not None
                try:
                    self.conn.send((request, *args))
                    if not self.conn.poll(timeout + REPLY_GRACE):
                        raise TimeoutError(f"the shipper of run {self.run_id} did not answer")
                    status, value = self.conn.recv()
                except (EOFError, OSError):
                    if attempt:
                        raise ShipperGone(f"the shipper of run {self.run_id} ended") from None
                    self._wait_dead()
                    continue
                if status is Reply.ERROR:
                    raise RuntimeError(f"traindash shipper: {value}")
                return value
        raise AssertionError("unreachable")

    def _wait_dead(self) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5.0)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _check_alive(self) -> None:
        """Start a new shipper if this one has died (it picks up at the ring's tail)."""
        if self.proc is not None and self.proc.poll() is not None:
            if self.restarts >= MAX_RESTARTS:
                raise ShipperGone(
                    f"the shipper of run {self.run_id} keeps exiting "
                    f"({self.restarts} restarts); its errors are above"
                )
            log.warning(
                "traindash: the shipper of run %s exited with %s; starting a new one. "
                "Batches it had sent but not yet seen acknowledged may be missing.",
                self.run_id,
                self.proc.returncode,
            )
            self.restarts += 1
            last_seq = max(
                self._setup.last_seq,
                self.queue.get(ring.LAST_SEQ),
                load_last_seq(self.output_dir, self.run_id),
            )
            self._setup = dataclasses.replace(self._setup, last_seq=last_seq)
            self._spawn()

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        # The folder traindash is imported from, so that the child finds the same one.
        root = str(Path(traindash.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with child:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _ENTRY, str(self._fd), str(child.fileno())],
                pass_fds=(self._fd, child.fileno()),
                env=env,
                stdin=subprocess.DEVNULL,
            )
        if self.conn is not None:
            self.conn.close()
        self.conn = Connection(parent.detach())
        self.conn.send(self._setup)


def _after_fork(client: weakref.ref[ShipperClient]) -> None:
    alive = client()
    if alive is not None and not alive.forked:
        alive.forget_after_fork()


class StatsProxy:
    """The logger's statistics when they live in the shipper: each call is one request."""

    def __init__(self, client: ShipperClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        if name not in STATS_METHODS:
            raise AttributeError(name)

        def call(*args: Any) -> Any:
            return self._client.call(Request.STATS, name, args)

        return call

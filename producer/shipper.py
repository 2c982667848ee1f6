"""The process sender: a MetricsLogger's sender in a process of its own.

With ``sender="process"`` the training thread copies each record into a shared-memory
ring (:mod:`producer.ring`) and is done. A shipper process started by the logger polls
the ring and runs the same :class:`~producer.sender.Sender` loop as the thread sender
(pack, publish, acks, re-sends, spool), plus the run's statistics and auto-save. The
training process never shares a GIL with it, so a trainer whose own work holds the GIL
pays only for the copy.

Requests from the training process (statistics, flush, stop) travel over a socket pair
as pickled tuples. When the training process dies, the shipper sees the socket close,
ships what is left in the ring, and stops as ``close()`` would, without an end record.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from traindash.config import ProducerConfig
from traindash.producer import ring, snapshot
from traindash.producer.sender import ACK_EVERY, Sender
from traindash.producer.spool import load_last_seq, spool_path
from traindash.producer.stats import RunStats

log = logging.getLogger("traindash.producer")

MIN_POLL = 0.002
SPOOL_COMPACT_BYTES = 4 * 1024 * 1024
MAX_RESTARTS = 5
FLUSH_POLL = 0.005
STATS_METHODS = frozenset(
    {"recent_episodes", "window", "latest_episode", "best_record", "smoothed", "statistics", "clear_window"}
)
# ``-m producer.shipper`` would import the module twice (the package imports it too).
_ENTRY = "import sys; from producer.shipper import main; sys.exit(main(sys.argv))"
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
        self._setup = {
            "run_id": run_id,
            "config": config,
            "output_dir": output_dir,
            "host": host,
            "pid": pid,
            "experiment_name": experiment_name,
            "history_size": history_size,
            "auto_save_interval": auto_save_interval,
            "buffer_size": buffer_size,
            "auto_save_min_interval": snapshot.AUTO_SAVE_MIN_INTERVAL,
            "spool_compact_bytes": SPOOL_COMPACT_BYTES,
        }
        self._last_seq = last_seq
        self._fd = ring.create(capacity)
        self.queue = ring.RingWriter(self._fd, on_full=self._check_alive)
        self._lock = threading.RLock()
        self.proc: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self._left = 0
        self.collector_state = ""  # the shipper's last word on it, when it stops
        self._stop_timeout = config.close_timeout
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
            return bool(self.call("flush", timeout, timeout=timeout))
        except ShipperGone:
            return False

    @property
    def pending(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self._left
        try:
            return int(self.call("pending", timeout=5.0))
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
                self.conn.send(("stop", timeout))
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
                        if status == "ok":
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
                    self.conn.send(("stop", timeout))
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
    def call(self, *request: Any, timeout: float = 0.0) -> Any:
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
                    self.conn.send(request)
                    if not self.conn.poll(timeout + REPLY_GRACE):
                        raise TimeoutError(f"the shipper of run {self.run_id} did not answer")
                    status, value = self.conn.recv()
                except (EOFError, OSError):
                    if attempt:
                        raise ShipperGone(f"the shipper of run {self.run_id} ended") from None
                    self._wait_dead()
                    continue
                if status == "error":
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
            self._last_seq = max(
                self._last_seq, self.queue.get(ring.LAST_SEQ), load_last_seq(self.output_dir, self.run_id)
            )
            self._spawn()

    def _spawn(self) -> None:
        parent, child = socket.socketpair()
        root = str(Path(__file__).resolve().parent.parent)
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
        self.conn.send({**self._setup, "last_seq": self._last_seq})


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
            return self._client.call("stats", name, args)

        return call


class Shipper(Sender):
    """The Sender loop fed from the ring, answering the training process's requests."""

    def __init__(self, reader: ring.RingReader, conn: Connection, setup: dict[str, Any]) -> None:
        config: ProducerConfig = setup["config"]
        super().__init__(
            setup["run_id"],
            config,
            deque(),
            RunStats(setup["history_size"]),
            setup["output_dir"],
            setup["host"],
            setup["pid"],
            setup["last_seq"],
        )
        self.reader, self.conn = reader, conn
        self.buffer_size = setup["buffer_size"]
        self.flushes: list[tuple[int, float]] = []
        self.orphaned = False
        self.snapshots = snapshot.Snapshots(
            setup["experiment_name"],
            self.run_id,
            self.output_dir,
            config,
            self.stats,
            # wait_acked, not flush: only the shipper thread packs and spools
            self.wait_acked,
            setup["auto_save_interval"],
            setup["auto_save_min_interval"],
        )
        self.on_packed = self.snapshots.maybe_auto_save
        self._rate = 0.0
        self._read_at = time.monotonic()
        self._drained_to = reader.tail
        self._compacted_at = 0.0
        self.spool_compact_bytes = setup["spool_compact_bytes"]

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.snapshots.join(timeout=10)
            self._reply(("ok", self.pending, self.collector_state))

    def _idle(self, timeout: float) -> None:
        wait = min(timeout, self._poll_interval())
        try:
            if self.conn.poll(max(wait, 0.0)):
                while True:
                    self._handle(self.conn.recv())
                    if not self.conn.poll(0):
                        break
        except (EOFError, OSError):
            if not self.orphaned:
                # The training process is gone: ship what it left in the ring, then stop.
                self.orphaned = True
                if self.stop_deadline is None:
                    self.stop(self.config.close_timeout)
            time.sleep(wait)
        self._take_ring()
        self._answer_flushes()

    def _poll_interval(self) -> float:
        if self.flushes:
            return FLUSH_POLL
        # Poll about as often as the thread sender's count trigger would fire.
        if self._rate <= 0:
            return self.config.flush_interval
        return max(MIN_POLL, min(self.config.flush_interval, self.buffer_size / self._rate))

    # -- nothing read from the ring is lost when this process dies -------------------------
    # Every batch is in the spool file before it is sent, and only then is its ring space
    # freed, with the seq it reached. A shipper started after this one died re-sends the
    # spool and packs the rest of the ring from that seq on: no gap, no duplicate.
    def drain(self) -> None:
        read_to = self.reader.tail  # everything read so far is in the queue
        super().drain()
        self._drained_to = read_to

    def _keep(self, body: bytes) -> int | None:
        try:
            return self.spool.append(body)
        except OSError as exc:
            self._warn_once(
                "spool-ahead",
                "cannot write the spool of run %s (%s); a shipper that dies now loses what it has not sent",
                self.run_id,
                exc,
            )
            return None

    def _take_outbox(self, now: float, out: list[list[bytes]]) -> None:
        super()._take_outbox(now, out)
        self._release()

    def _release(self) -> None:
        # TAIL first: a shipper killed in between finds the seq in the spool file.
        self.reader.release(self._drained_to)
        self.reader.set(ring.LAST_SEQ, self.last_seq)

    def _read_acks(self, sub: Any, now: float) -> None:
        super()._read_acks(sub, now)
        if not self.unacked or now - self._compacted_at < ACK_EVERY:
            return
        self._compacted_at = now
        size = self.spool.size()
        # Acks are cumulative and batches keep coming, so the file may never empty by
        # itself: once it is mostly acknowledged batches, keep only the rest.
        if size > self.spool_compact_bytes and size > 2 * sum(e.size for e in self.unacked.values()):
            entries = list(self.unacked.values())
            bodies = [e.body if e.body is not None else self.spool.read(e.offset or 0) for e in entries]
            for entry, offset in zip(entries, self.spool.rewrite(bodies), strict=True):
                entry.offset = offset

    def _take_ring(self) -> None:
        n = self.reader.read_into(self.queue)
        now = time.monotonic()
        dt = now - self._read_at
        if dt > 0:
            self._rate = 0.7 * self._rate + 0.3 * (n / dt)
        self._read_at = now

    def _handle(self, request: tuple) -> None:
        op = request[0]
        try:
            if op == "stop":
                self.stop(float(request[1]))
                return
            self._take_ring()
            self.drain()
            if op == "flush":
                self.flushes.append((self.last_seq, time.monotonic() + float(request[1])))
                self.want_ack = True
            elif op == "pending":
                self._reply(("ok", self.pending))
            elif op == "stats" and request[1] in STATS_METHODS:
                self._reply(("ok", getattr(self.stats, request[1])(*request[2])))
            else:
                self._reply(("error", f"unknown request {op!r}"))
        except Exception as exc:  # answer, so the training process does not wait forever
            log.warning("traindash shipper: request %r failed", op, exc_info=True)
            self._reply(("error", repr(exc)))

    def _answer_flushes(self) -> None:
        if not self.flushes:
            return
        now = time.monotonic()
        keep = []
        for target, deadline in self.flushes:
            if self.acked >= target:
                self._reply(("ok", True))
            elif now >= deadline:
                self._reply(("ok", False))
            else:
                keep.append((target, deadline))
        self.flushes = keep
        if keep:
            self.want_ack = True

    def _reply(self, message: tuple) -> None:
        if self.orphaned:
            return
        try:
            self.conn.send(message)
        except OSError:
            self.orphaned = True

    def _finish(self) -> None:
        try:
            self._take_ring()
        except ring.RingError:
            log.warning("traindash shipper: the ring of run %s is damaged", self.run_id, exc_info=True)
        super()._finish()  # whatever is unacknowledged is in the spool now
        self._release()
        for _target, _deadline in self.flushes:
            self._reply(("ok", self.acked >= _target))
        self.flushes = []


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: shipper RING_FD SOCKET_FD (started by a MetricsLogger)", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # Ctrl-C reaches the whole process group; the trainer handles it and closes its logger,
    # and this process must live on to ship what is left.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[2]))
    setup = conn.recv()
    shipper = Shipper(ring.RingReader(int(argv[1])), conn, setup)

    def on_term(signum: int, frame: Any) -> None:
        shipper.orphaned = True
        shipper.stop(min(2.0, shipper.config.close_timeout))

    signal.signal(signal.SIGTERM, on_term)
    shipper.start()
    while shipper.is_alive():
        shipper.join(timeout=0.5)
    return 0

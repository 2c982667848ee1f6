"""The process sender, the shipper's side: a MetricsLogger's sender in a process of its own.

Started by :class:`~traindash.producer.shipper_client.ShipperClient`, the shipper polls
the shared-memory ring the training thread writes and runs the same
:class:`~traindash.producer.sender.Sender` loop as the thread sender (pack, publish,
acks, re-sends, spool), plus the run's statistics and auto-save. The training process
never shares a GIL with it, so a trainer whose own work holds the GIL pays only for the
copy into the ring.

It answers the requests of :mod:`traindash.producer.shipper_protocol`. When the training
process dies, the shipper sees the socket close, ships what is left in the ring, and
stops as ``close()`` would, without an end record.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

from traindash.producer import ring, snapshot
from traindash.producer.sender import ACK_EVERY, Sender
from traindash.producer.shipper_protocol import STATS_METHODS, Reply, Request, Setup
from traindash.producer.stats import RunStats

log = logging.getLogger("traindash.producer")

MIN_POLL = 0.002
FLUSH_POLL = 0.005


class Shipper(Sender):
    """The Sender loop fed from the ring, answering the training process's requests."""

    def __init__(self, reader: ring.RingReader, conn: Connection, setup: Setup) -> None:
        super().__init__(
            setup.run_id,
            setup.config,
            deque(),
            RunStats(setup.history_size),
            setup.output_dir,
            setup.host,
            setup.pid,
            setup.last_seq,
        )
        self.reader, self.conn = reader, conn
        self.buffer_size = setup.buffer_size
        self.flushes: list[tuple[int, float]] = []
        self.orphaned = False
        self.snapshots = snapshot.Snapshots(
            setup.experiment_name,
            self.run_id,
            self.output_dir,
            setup.config,
            self.stats,
            # wait_acked, not flush: only the shipper thread packs and spools
            self.wait_acked,
            setup.auto_save_interval,
            setup.auto_save_min_interval,
        )
        self.on_packed = self.snapshots.maybe_auto_save
        self._rate = 0.0
        self._read_at = time.monotonic()
        self._drained_to = reader.tail
        self._compacted_at = 0.0
        self.spool_compact_bytes = setup.spool_compact_bytes

    def run(self) -> None:
        try:
            super().run()
        finally:
            self.snapshots.join(timeout=10)
            self._reply((Reply.OK, self.pending, self.collector_state))

    def _idle(self, timeout: float, doze_until: float | None = None) -> None:
        # The shipper polls the trainer's ring, so it never dozes: doze_until is not used.
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
            if op is Request.STOP:
                self.stop(float(request[1]))
                return
            self._take_ring()
            self.drain()
            if op is Request.FLUSH:
                self.flushes.append((self.last_seq, time.monotonic() + float(request[1])))
                self.want_ack = True
            elif op is Request.PENDING:
                self._reply((Reply.OK, self.pending))
            elif op is Request.STATS and request[1] in STATS_METHODS:
                self._reply((Reply.OK, getattr(self.stats, request[1])(*request[2])))
            else:
                self._reply((Reply.ERROR, f"unknown request {op!r}"))
        except Exception as exc:  # answer, so the training process does not wait forever
            log.warning("traindash shipper: request %r failed", op, exc_info=True)
            self._reply((Reply.ERROR, repr(exc)))

    def _answer_flushes(self) -> None:
        if not self.flushes:
            return
        now = time.monotonic()
        keep = []
        for target, deadline in self.flushes:
            if self.acked >= target:
                self._reply((Reply.OK, True))
            elif now >= deadline:
                self._reply((Reply.OK, False))
            else:
                keep.append((target, deadline))
        self.flushes = keep
        if keep:
            self.want_ack = True

    def _reply(self, message: tuple[Any, ...]) -> None:
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
            self._reply((Reply.OK, self.acked >= _target))
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

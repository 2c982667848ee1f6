"""The collector process: ingest, validate, batch into DuckDB, acknowledge, fan out.

The socket loop never waits for DuckDB: commits run on the writer thread
(:mod:`collector.writer`), and meanwhile the loop keeps taking in the next batch and
answers every heartbeat at once with what is committed and what it holds, so a producer
can tell a busy collector from a missing one and re-send only what was lost.

Shutdown is a flag the loop checks (SIGTERM/SIGINT set it; a second signal forces exit):
the loop then commits what it holds, publishes the acks, and closes the file.
"""

from __future__ import annotations

import errno
import logging
import queue
import time
from collections import Counter

import zmq

from traindash import security, wire
from traindash.collector.owners import Owners
from traindash.collector.queryserver import QueryServer
from traindash.collector.sequencer import Sequencer
from traindash.collector.store import Store, StoreError, Work
from traindash.collector.writer import Writer
from traindash.config import CollectorConfig, ConfigError
from traindash.shutdown import GracefulExit

log = logging.getLogger("traindash.collector")

LIVENESS_INTERVAL = 1.0
REJECT_LOG_INTERVAL = 5.0
COMMIT_BACKOFF_FIRST = 0.5
COMMIT_BACKOFF_MAX = 10.0
INGEST_RCVHWM = 200
ROWS_SNDHWM = 100_000


def _sender(frames: list) -> str:
    """The peer address of a received message, for logs ("?" when ZeroMQ cannot tell)."""
    try:
        return str(frames[0].get("Peer-Address"))
    except (AttributeError, IndexError, zmq.ZMQError):
        return "?"


def _user_id(frames: list) -> str:
    """The CURVE public key (Z85) the authenticator admitted the sender with."""
    try:
        return str(frames[0].get("User-Id"))
    except (AttributeError, IndexError, zmq.ZMQError):
        return ""


class CollectorError(RuntimeError):
    """The collector cannot start (address in use, database locked or unwritable)."""


def _bind(sock: zmq.Socket, endpoint: str, what: str) -> None:
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CollectorError(
                f"{what} address {endpoint} is already in use (is another collector running?)"
            ) from None
        raise CollectorError(f"cannot bind {what} socket to {endpoint}: {exc}") from None


class Collector(GracefulExit):
    """Owns the DuckDB file and the ingest, rows and query sockets."""

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.should_exit = False
        self.force_exit = False
        self.rejects: Counter[str] = Counter()
        self.reject_last: dict[str, tuple[float, str, str]] = {}
        self._rejects_dirty = False
        self.committed_rows = 0
        self._last_reject_log = 0.0
        self.backoff_until = 0.0
        self.backoff = COMMIT_BACKOFF_FIRST
        self.ctx = zmq.Context()
        self._socks: list[zmq.Socket] = []
        self.auth = None
        self.monitor: zmq.Socket | None = None
        try:
            if config.curve_secret or config.curve_allow:
                if not (config.curve_secret and config.curve_allow):
                    raise CollectorError("CURVE needs both --curve-secret and --curve-allow")
                try:
                    self.auth = security.start_authenticator(self.ctx, config.curve_allow)
                except ConfigError as exc:
                    raise CollectorError(str(exc)) from None
            self.ingest = self._socket(zmq.SUB)
            self.ingest.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
            self.ingest.setsockopt(zmq.RCVHWM, INGEST_RCVHWM)
            self.ingest.setsockopt(zmq.SUBSCRIBE, b"")
            _bind(self.ingest, config.endpoints.ingest, "ingest")
            if self.auth is not None:
                self.monitor = self.ingest.get_monitor_socket(security.HANDSHAKE_FAILURES)
            self.rows = self._socket(zmq.PUB)
            self.rows.setsockopt(zmq.SNDHWM, ROWS_SNDHWM)
            self.rows.setsockopt(zmq.LINGER, 500)
            _bind(self.rows, config.endpoints.rows, "rows")
            try:
                self.store = Store(config.db, config.memory_limit)
            except StoreError as exc:
                raise CollectorError(str(exc)) from None
            try:
                self.queries = QueryServer(self.ctx, config, self.store.cursor)
                self.store.on_memory_pressure = self.queries.yield_memory
            except zmq.ZMQError as exc:
                self.store.close()
                if exc.errno == errno.EADDRINUSE:
                    raise CollectorError(
                        f"query address {config.endpoints.query} is already "
                        "in use (is another collector running?)"
                    ) from None
                raise CollectorError(f"cannot bind query socket: {exc}") from None
        except BaseException:
            self._close_sockets()
            raise
        self.rejects.update(self.store.reject_counts())
        self.seq = Sequencer(self.store.marks())
        # Under CURVE a run belongs to the key that opened it (see collector/owners.py).
        self.owners = Owners(self.store.owners()) if self.auth is not None else None
        self.work = Work()
        self.writer = Writer(self.ctx)

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        self._socks.append(sock)
        if self.config.curve_secret:
            try:
                security.secure_server(sock, self.config.curve_secret)
            except ConfigError as exc:
                raise CollectorError(str(exc)) from None
        return sock

    def run(self) -> None:
        self.queries.start()
        self.writer.start()
        log.info(
            "collector: ingest %s, rows %s, query %s, db %s",
            self.config.endpoints.ingest,
            self.config.endpoints.rows,
            self.config.endpoints.query,
            self.config.db,
        )
        poller = zmq.Poller()
        poller.register(self.ingest, zmq.POLLIN)
        poller.register(self.writer.done, zmq.POLLIN)
        if self.monitor is not None:
            poller.register(self.monitor, zmq.POLLIN)
        next_liveness = time.monotonic() + LIVENESS_INTERVAL
        first_pending = 0.0
        reading = True
        try:
            while not self.should_exit:
                if time.monotonic() < self.backoff_until:
                    # The last commit failed (disk full?): take nothing in, ack nothing;
                    # producers keep their records and re-send them.
                    time.sleep(0.05)
                    continue
                if reading != (self.work.rows < self.config.max_batch_rows):
                    # A full batch waits for the writer; meanwhile ZeroMQ queues the rest.
                    reading = not reading
                    poller.register(self.ingest, zmq.POLLIN if reading else 0)
                wait = 0 if self.work and not self.writer.busy else 100
                events = dict(poller.poll(wait))
                if self.monitor is not None and self.monitor in events:
                    self._log_handshakes()
                if self.writer.done in events:
                    self.writer.collect()
                if self.ingest in events:
                    if not self.work:
                        first_pending = time.monotonic()
                    self._drain(first_pending)
                if self.writer.busy:
                    continue
                now = time.monotonic()
                if not self.queries.manage_requests.empty():
                    self.writer.submit(self._manage, self._task_done)
                elif now >= next_liveness:
                    next_liveness = now + LIVENESS_INTERVAL
                    self._liveness()
                elif self.work or self.work.acks:
                    self._commit()
        finally:
            self.shutdown()

    def _drain(self, started: float) -> None:
        """Receive what is waiting, up to a batch's worth of rows; past the commit
        interval, stop as soon as the writer is free to take it."""
        deadline = started + self.config.commit_interval
        while self.work.rows < self.config.max_batch_rows:
            try:
                frames = self.ingest.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.handle(frames)
            if time.monotonic() >= deadline and (not self.writer.busy or self.writer.done.poll(0)):
                return

    def handle(self, frames: list) -> None:
        """Admit one ingest message into the pending work (malformed ones are counted)."""
        try:
            msg = wire.decode([getattr(f, "buffer", f) for f in frames])  # a zmq.Frame's bytes, no copy
        except wire.WireError as exc:
            self._reject(exc.reason, str(exc), _sender(frames))
            return
        now = time.time()
        if self.owners is not None and isinstance(msg, (wire.Batch, wire.Heartbeat)):
            key, run = _user_id(frames), wire.split_stream_key(msg.run_id)[0]
            if not self.owners.admit(run, key):  # every stream of a run: the run's owner
                sender = f"{key} at {_sender(frames)}"
                self._reject("foreign-run", f"run {run!r} belongs to another key", sender)
                return
            if (claim := self.owners.unsaved(run)) is not None:
                self.work.owners[run] = claim
        if isinstance(msg, wire.Batch):
            sections = self.seq.offer(msg)
            for section in sections:
                self.work.sections.append((msg.run_id, section))
                self.work.rows += len(section)
            self.work.seen[msg.run_id] = now
            if sections:
                self.work.marks[msg.run_id] = self.seq.mark(msg.run_id)
            if msg.ack or not sections:  # a re-sent duplicate is always answered
                self.work.acks.add(msg.run_id)
        elif isinstance(msg, wire.Heartbeat):
            self.work.seen[msg.run_id] = now
            self._answer(msg)
        else:
            self._reject("unexpected-kind", type(msg).__name__, _sender(frames))

    def _reject(self, reason: str, detail: str, sender: str) -> None:
        self.rejects[reason] += 1
        self.reject_last[reason] = (time.time(), sender, detail)
        self._rejects_dirty = True
        now = time.monotonic()
        if now - self._last_reject_log >= REJECT_LOG_INTERVAL:
            self._last_reject_log = now
            log.warning(
                "rejected a %s message from %s (%s); rejects so far: %s",
                "foreign-run" if reason == "foreign-run" else "malformed",
                sender,
                detail,
                dict(self.rejects),
            )

    def _answer(self, hb: wire.Heartbeat) -> None:
        """Answer a heartbeat now, even while a commit runs: committed up to where, and
        held (received in order, committed or not) up to where."""
        run = hb.run_id
        committed, have = self.seq.committed.get(run, 0), self.seq.mark(run)
        self.rows.send_multipart(wire.encode(wire.Ack(run, committed, have, hb.ts)))
        if have > committed:
            self.work.acks.add(run)  # and a plain ack once what it holds is committed

    def _commit(self) -> None:
        """Hand the pending work to the writer (with nothing to write, just send its acks)."""
        work, self.work = self.work, Work()
        if not work:
            self._acknowledge(work)
            return
        store, hook = self.store, self.config.test_invalidate_file

        def commit() -> None:
            if hook is not None and hook.exists():  # test-only: act as a fatal DuckDB error
                hook.unlink()
                raise StoreError("commit failed: database invalidated (test hook)")
            store.commit(work)

        self.writer.submit(commit, lambda _, exc: self._committed(work, exc))

    def _committed(self, work: Work, exc: BaseException | None) -> None:
        if exc is not None:
            if not isinstance(exc, StoreError):
                raise exc
            # Nothing is acknowledged; producers keep their records and re-send them.
            log.error(
                "%s; %d rows will be re-sent by their producers; retrying in %.1f s",
                exc,
                work.rows,
                self.backoff,
            )
            self.seq.rollback()
            # What arrived meanwhile was admitted on top of the marks just rolled back.
            self.work.sections.clear()
            self.work.marks.clear()
            self.work.rows = 0
            self.backoff_until = time.monotonic() + self.backoff
            self.backoff = min(self.backoff * 2, COMMIT_BACKOFF_MAX)
            if "invalidated" in str(exc):
                self._reopen()
            return
        self.backoff = COMMIT_BACKOFF_FIRST
        self.seq.commit(work.marks)
        if self.owners is not None:
            self.owners.committed(list(work.owners))
        self.committed_rows += work.rows
        self._acknowledge(work)

    def _acknowledge(self, work: Work) -> None:
        for run_id in work.acks:
            self.rows.send_multipart(wire.encode(wire.Ack(run_id, self.seq.committed.get(run_id, 0))))
        for run_id, section in work.sections:
            # Subscribers follow runs: a stream's rows go out under its run, naming the stream.
            run, stream = wire.split_stream_key(run_id)
            self.rows.send_multipart(wire.encode(wire.Rows(run, section, stream)))

    def _task_done(self, _result: object, exc: BaseException | None) -> None:
        if exc is not None:
            log.error("a store task failed: %s", exc, exc_info=exc)

    def _manage(self) -> None:
        """Carry out archive/delete requests from the query thread, on the writer."""
        while True:
            try:
                msg, future = self.queries.manage_requests.get_nowait()
            except queue.Empty:
                return
            try:
                ids = self.store.manage(msg.action, list(msg.run_ids))
            except StoreError as exc:
                future.set_exception(exc)
            else:
                log.info("%s %d run(s): %s", msg.action, len(ids), ", ".join(ids))
                future.set_result(ids)

    def _log_handshakes(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        assert self.monitor is not None
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            self.rejects["handshake"] += 1
            self._rejects_dirty = True
            log.warning("refused a connection: %s", security.describe_event(dict(event)))

    def _reopen(self) -> None:
        """DuckDB invalidates a database after a fatal error; reopen it from the file."""
        log.warning("reopening %s after a fatal database error", self.config.db)
        try:
            self.queries.stop()
            self.queries.join(timeout=5)
            self.store.con.close()
            self.store = Store(self.config.db, self.config.memory_limit)
            self.seq = Sequencer(self.store.marks())
            self.queries = QueryServer(self.ctx, self.config, self.store.cursor)
            self.store.on_memory_pressure = self.queries.yield_memory
            self.queries.start()
        except Exception as exc:
            log.error("could not reopen the database: %s", exc)

    def _liveness(self) -> None:
        """Mark silent runs stalled or lost, and persist reject counters (on the writer)."""
        store, now, rejects = self.store, time.time(), None
        if self._rejects_dirty:
            self._rejects_dirty = False
            rejects = [
                (reason, count, *self.reject_last.get(reason, (0, "", "")))
                for reason, count in self.rejects.items()
            ]

        def write() -> None:
            store.update_liveness(now, self.config.stall_after, self.config.lost_after)
            if rejects:
                store.record_rejects(rejects)

        def done(_: object, exc: BaseException | None) -> None:
            if exc is not None:
                log.warning("liveness update failed: %s", exc)

        self.writer.submit(write, done)

    def shutdown(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            if self.writer.is_alive():
                while self.writer.busy:
                    self.writer.collect(timeout_ms=100)
                if not self.force_exit and (self.work or self.work.acks):
                    self._commit()
                    while self.writer.busy:
                        self.writer.collect(timeout_ms=100)
        finally:
            self.writer.finish()
            if self.queries.is_alive():
                self.queries.stop()
                self.queries.join(timeout=5)
            else:
                self.queries.sock.close(0)
            self.store.close()
            self._close_sockets()
            log.info("collector stopped; %d rows committed this session", self.committed_rows)

    def _close_sockets(self) -> None:
        if self.monitor is not None:
            self.ingest.disable_monitor()
            self.monitor.close(0)
        for sock in self._socks:
            sock.close()
        if self.auth is not None:
            self.auth.stop()
        self.ctx.term()

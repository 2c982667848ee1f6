"""The collector process: ingest, validate, batch into DuckDB, acknowledge, fan out.

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
from traindash.collector.queryserver import QueryServer
from traindash.collector.sequencer import Sequencer
from traindash.collector.store import Store, StoreError, Work
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
                self.queries = QueryServer(
                    self.ctx,
                    config.endpoints.query,
                    self.store.cursor(),
                    config.query_timeout,
                    config.query_max_rows,
                    config.curve_secret,
                )
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
        self.work = Work()
        self.ack_due: set[str] = set()

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
        log.info(
            "collector: ingest %s, rows %s, query %s, db %s",
            self.config.endpoints.ingest,
            self.config.endpoints.rows,
            self.config.endpoints.query,
            self.config.db,
        )
        poller = zmq.Poller()
        poller.register(self.ingest, zmq.POLLIN)
        if self.monitor is not None:
            poller.register(self.monitor, zmq.POLLIN)
        next_liveness = time.monotonic() + LIVENESS_INTERVAL
        first_pending = 0.0
        try:
            while not self.should_exit:
                if time.monotonic() < self.backoff_until:
                    # The last commit failed (disk full?): take nothing in, ack nothing;
                    # producers keep their records and re-send them.
                    time.sleep(0.05)
                    continue
                wait = 0 if self.work else 100
                events = dict(poller.poll(wait))
                if self.monitor is not None and self.monitor in events:
                    self._log_handshakes()
                if self.ingest in events:
                    if not self.work:
                        first_pending = time.monotonic()
                    self._drain(first_pending)
                if self.work or self.ack_due:
                    self._commit()
                if not self.queries.manage_requests.empty():
                    self._manage()
                now = time.monotonic()
                if now >= next_liveness:
                    next_liveness = now + LIVENESS_INTERVAL
                    self._liveness()
        finally:
            self.shutdown()

    def _drain(self, started: float) -> None:
        """Receive what is waiting, up to a batch's worth of rows or the commit interval."""
        deadline = started + self.config.commit_interval
        while self.work.rows < self.config.max_batch_rows:
            try:
                frames = self.ingest.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self.handle(frames)
            if time.monotonic() >= deadline:
                return

    def handle(self, frames: list) -> None:
        """Admit one ingest message into the pending work (malformed ones are counted)."""
        try:
            msg = wire.decode(
                [
                    f.buffer if isinstance(f, zmq.Frame) else f  # type: ignore[misc]
                    for f in frames
                ]
            )
        except wire.WireError as exc:
            self._reject(exc.reason, str(exc), _sender(frames))
            return
        now = time.time()
        if isinstance(msg, wire.Batch):
            sections = self.seq.offer(msg)
            for section in sections:
                self.work.sections.append((msg.run_id, section))
                self.work.rows += len(section)
            self.work.seen[msg.run_id] = now
            if sections:
                self.work.marks[msg.run_id] = self.seq.mark(msg.run_id)
            if msg.ack or not sections:  # a re-sent duplicate is always answered
                self.ack_due.add(msg.run_id)
        elif isinstance(msg, wire.Heartbeat):
            self.work.seen[msg.run_id] = now
            self.ack_due.add(msg.run_id)
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
                "rejected a malformed message from %s (%s); rejects so far: %s",
                sender,
                detail,
                dict(self.rejects),
            )

    def _commit(self) -> None:
        work, self.work = self.work, Work()
        if work:
            try:
                self.store.commit(work)
            except StoreError as exc:
                # Nothing is acknowledged; producers keep their records and re-send them.
                log.error(
                    "%s; %d rows will be re-sent by their producers; retrying in %.1f s",
                    exc,
                    work.rows,
                    self.backoff,
                )
                self.seq.rollback()
                self.ack_due.clear()
                self.backoff_until = time.monotonic() + self.backoff
                self.backoff = min(self.backoff * 2, COMMIT_BACKOFF_MAX)
                if "invalidated" in str(exc):
                    self._reopen()
                return
            self.backoff = COMMIT_BACKOFF_FIRST
            self.seq.commit()
            self.committed_rows += work.rows
        acks, self.ack_due = self.ack_due, set()
        for run_id in acks:
            self.rows.send_multipart(wire.encode(wire.Ack(run_id, self.seq.committed.get(run_id, 0))))
        for run_id, section in work.sections:
            # Subscribers follow runs: a stream's rows go out under its run.
            self.rows.send_multipart(wire.encode(wire.Rows(wire.split_stream_key(run_id)[0], section)))

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
            self.queries = QueryServer(
                self.ctx,
                self.config.endpoints.query,
                self.store.cursor(),
                self.config.query_timeout,
                self.config.query_max_rows,
            )
            self.queries.start()
        except Exception as exc:
            log.error("could not reopen the database: %s", exc)

    def _liveness(self) -> None:
        try:
            self.store.update_liveness(time.time(), self.config.stall_after, self.config.lost_after)
            if self._rejects_dirty:
                self._rejects_dirty = False
                self.store.record_rejects(
                    [
                        (reason, count, *self.reject_last.get(reason, (0, "", "")))
                        for reason, count in self.rejects.items()
                    ]
                )
        except Exception as exc:
            log.warning("liveness update failed: %s", exc)

    def shutdown(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        try:
            if not self.force_exit and (self.work or self.ack_due):
                self._commit()
        finally:
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

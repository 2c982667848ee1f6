"""Read-only SQL over the query socket: one router thread, several workers, fair shares.

The router thread owns the ROUTER socket. It queues each request per client and lane
(:mod:`traindash.collector.queryqueue`), starts it on a free worker (each worker has its own
DuckDB cursor, so readers do not wait behind each other), and stops what nobody waits for:

* a query whose client's timeout (sent with the request) or the collector's
  ``query_timeout`` has passed, which the client cancelled, or whose client disconnected
  (a socket monitor reports the connection's file descriptor) is interrupted
  (``cursor.interrupt()``) or withdrawn from its queue;
* queries that hold too much of DuckDB's memory, or grew the RSS past its bound, are
  interrupted by the memory guard (:mod:`traindash.collector.querymemory`).

Clients that send a request ``id`` get a ``progress`` message at once (queued behind N, or
started), so a client that gives up can say "busy" rather than "no collector". Everything
that does not end in an answer is logged and counted (:mod:`traindash.collector.querystats`).
Results travel as an Arrow IPC stream, in parts as they are read to clients that take them
(``arrow_frame``). See docs/queries.md.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

import duckdb
import pyarrow as pa
import zmq

from traindash import security, wire
from traindash.collector.querymemory import QUERY_SHARE, MemoryGuard, memory_bound, mib, rss
from traindash.collector.queryqueue import CONSOLE, SERVICE, Job, QueueFull, Scheduler
from traindash.collector.queryrun import MAX_PARTS, run_query
from traindash.collector.querystats import REFUSED, WITHDRAWN, QueryStats
from traindash.collector.queryworker import CUT_MESSAGES, PART, Outcome, Worker
from traindash.config import CollectorConfig, parse_size

log = logging.getLogger("traindash.collector.query")

TICK_MS = 20  # deadline and memory checks while queries run or wait
IDLE_MS = 100
MANAGE_TIMEOUT = 30.0
RECV_BURST = 200
# After a commit ran out of DuckDB memory: how long no query starts, how long to wait for
# the interrupted ones to stop.
HOLD_S = 0.5
STOP_TIMEOUT = 4.0  # for the workers to finish at shutdown (the collector waits 5 s)
YIELD_WAIT_S = 2.0
# A ROUTER drops what it cannot queue for a peer (ZeroMQ's default is 1,000 messages): room
# for a client's results in parts on both lanes and more (a client counts its parts, so a
# loss is an error, never a short table).
SEND_HWM = 4 * (MAX_PARTS + 1)


class QueryServer(threading.Thread):
    """Answers the query socket until ``stop()``; see the module docstring."""

    def __init__(
        self,
        ctx: zmq.Context,
        config: CollectorConfig,
        cursor: Callable[[], duckdb.DuckDBPyConnection],
    ) -> None:
        super().__init__(name="traindash-query", daemon=True)
        self.ctx = ctx
        self.config = config
        self.timeout = config.query_timeout
        self.max_rows = config.query_max_rows
        self.max_bytes = config.query_max_bytes
        self.bound = memory_bound(config)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1024 * 1024)
        self.sock.setsockopt(zmq.SNDHWM, SEND_HWM)
        if config.curve_secret is not None:
            security.secure_server(self.sock, config.curve_secret)
        try:
            self.sock.bind(config.endpoints.query)
        except zmq.ZMQError:
            self.sock.close(0)
            raise
        # Workers wake the router through a socket pair, not ZeroMQ: a worker stuck in an
        # uninterruptible call must not hold a ZeroMQ socket that keeps ctx.term() waiting.
        self._wake_r, self._wake_w = socket.socketpair()
        for end in (self._wake_r, self._wake_w):
            end.setblocking(False)
        probe = cursor()
        self.duckdb_memory_limit = probe.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
        limit = parse_size(self.duckdb_memory_limit)
        self.guard = MemoryGuard(probe, limit, self.bound, self._running)
        bounds = {"bound": mib(self.bound), "memory_limit": mib(limit), "share": f"{QUERY_SHARE:.0%}"}
        self.workers = [
            Worker(i, cursor(), self.max_bytes, bounds, self._worker_done)
            for i in range(config.query_workers)
        ]
        self.idle = list(self.workers)
        self.sched = Scheduler(config.query_workers, config.query_reserved)
        self.stats = QueryStats()
        self.done: queue.SimpleQueue[tuple] = queue.SimpleQueue()
        self._where: dict[Job, Worker] = {}
        self._fd_clients: dict[int, set[bytes]] = {}
        self.monitor: zmq.Socket | None = None
        self._stop_flag = threading.Event()
        self._hold_until = 0.0
        # Writes (archive/delete) go to the collector's writer loop, which owns the store.
        self.manage_requests: queue.Queue[tuple[wire.Manage, Future]] = queue.Queue()
        self._manage_waiting: list[tuple[Future, list[bytes], wire.Manage, float]] = []

    # -- lifecycle -----------------------------------------------------------------------
    def _running(self) -> list[tuple[Job, Callable[[str], bool]]]:
        """For the memory guard: the running jobs, each with a way to interrupt it."""
        return [(j, partial(w.interrupt, j)) for w in self.workers if (j := w.current) is not None]

    def _worker_done(self, worker: Worker, job: Job, outcome: Outcome) -> None:
        """On a worker's thread: hand the answer to the router thread and wake it."""
        self.done.put((worker, job, *outcome))
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # full (the router is due to wake anyway) or closed (shutting down)

    def yield_memory(self) -> None:
        """Called by the writer when a commit ran out of DuckDB memory, before it retries:
        interrupt the running queries (console ones, or all when none of those runs), hold
        new ones back for a moment and wait until the interrupted ones have stopped."""
        self._hold_until = time.monotonic() + HOLD_S
        busy = [(w, j) for w in self.workers if (j := w.current) is not None]
        victims = [(w, j) for w, j in busy if j.lane == CONSOLE] or busy
        for worker, job in victims:
            worker.interrupt(job, "ingest-first")
        deadline = time.monotonic() + YIELD_WAIT_S
        while time.monotonic() < deadline and any(w.current is j for w, j in victims):
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop_flag.set()
        for worker in self.workers:
            job = worker.current
            if job is not None:
                worker.interrupt(job, "shutdown")

    def run(self) -> None:
        log.info(
            "query server: %d workers (%d kept for the service lane), DuckDB memory_limit %s "
            "(queries may hold %.0f%%), result cap %s rows / %s, memory bound %s",
            len(self.workers),
            self.config.query_reserved,
            self.duckdb_memory_limit,
            100 * QUERY_SHARE,
            f"{self.max_rows:,}",
            mib(self.max_bytes),
            mib(self.bound),
        )
        # The first Arrow result of a process costs about half a second (pyarrow's set-up):
        # pay it here, not in the first client's timeout.
        try:
            run_query(self.workers[0].cursor, "SELECT 1", 1, self.max_bytes)
        except Exception as exc:
            log.warning("query server warm-up failed: %s", exc)
        self.monitor = self.sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        for worker in self.workers:
            worker.start()
        self.guard.start()
        poller = zmq.Poller()
        for sock in (self.sock, self.monitor, self._wake_r):
            poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop_flag.is_set():
                busy = self.sched.running or self.sched.queued or self._manage_waiting
                events = dict(poller.poll(TICK_MS if busy else IDLE_MS))
                if self.monitor in events:
                    self._disconnects()
                if self._wake_r.fileno() in events:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except OSError:
                        pass
                self._finish()
                self._manage_replies()
                if self.sock in events:
                    for _ in range(RECV_BURST):
                        try:
                            frames = self.sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._receive(frames)
                self._enforce(time.monotonic())
                self._dispatch()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for job in self.sched.drain():
            self.stats.record(job, WITHDRAWN, "shutdown")
        self.stop()
        self.guard.stopping.set()
        for worker in self.workers:
            worker.jobs.put(None)
        deadline = time.monotonic() + STOP_TIMEOUT
        for worker in self.workers:
            if worker.is_alive():
                worker.join(timeout=max(0.0, deadline - time.monotonic()))
            if not worker.is_alive():
                worker.cursor.close()
        if self.guard.is_alive():
            self.guard.join(timeout=1)
        if self.monitor is not None:
            self.sock.disable_monitor()
            self.monitor.close(0)
        self.sock.close(0)
        self._wake_r.close()
        if not any(w.is_alive() for w in self.workers):
            self._wake_w.close()

    # -- requests ------------------------------------------------------------------------
    def _send(self, envelope: list[bytes], msg: wire.Message) -> None:
        try:
            self.sock.send_multipart(envelope + wire.encode(msg), copy=False)
        except zmq.ZMQError as exc:  # a peer that is gone or full: its loss, not ours
            log.debug("query reply not sent: %s", exc)

    def _receive(self, frames: list[zmq.Frame]) -> None:
        if len(frames) < 3:
            return
        envelope = [f.bytes for f in frames[:-2]]
        client = envelope[0]
        try:
            fd = frames[0].get(zmq.SRCFD)
            self._fd_clients.setdefault(fd, set()).add(client)
        except (zmq.ZMQError, AttributeError):
            pass
        try:
            peer = str(frames[-1].get("Peer-Address"))
        except (zmq.ZMQError, AttributeError):
            peer = "?"
        try:
            msg = wire.decode([frames[-2].bytes, frames[-1].bytes])
        except wire.WireError as exc:
            self._send(envelope, wire.Error(f"malformed request: {exc}"))
            return
        if isinstance(msg, wire.Query):
            self._submit(msg, envelope, peer)
        elif isinstance(msg, wire.Cancel):
            self._cancel(client, msg.id, "cancelled")
        elif isinstance(msg, wire.Stats):
            self._send(envelope, wire.Result(self._ipc(self._stats_table(msg.what)), id=msg.id))
        elif isinstance(msg, wire.Manage):
            future: Future = Future()
            self.manage_requests.put((msg, future))
            self._manage_waiting.append((future, envelope, msg, time.monotonic()))
            if msg.id is not None:
                self._send(envelope, wire.Progress(msg.id, 0, True))
        else:
            self._send(envelope, wire.Error("expected a query message"))

    def _submit(self, msg: wire.Query, envelope: list[bytes], peer: str) -> None:
        now = time.monotonic()
        by_client = msg.timeout is not None and msg.timeout < self.timeout
        limit = msg.timeout if by_client and msg.timeout is not None else self.timeout
        job = Job(
            client=envelope[0],
            rid=msg.id,
            lane=msg.lane,
            sql=msg.sql,
            max_rows=max(0, min(msg.max_rows, self.max_rows)),
            received=now,
            deadline=now + limit,
            limit_s=limit,
            by_client=by_client,
            peer=peer,
            arrow_frame=msg.arrow_frame,
            envelope=envelope,
        )
        try:
            ahead = self.sched.submit(job)
        except QueueFull as exc:
            self.stats.record(job, REFUSED, "queue-full", str(exc))
            self._send(envelope, wire.Error(f"refused: {exc}", job.rid))
            return
        self._dispatch()
        if job.rid is not None and job.started is None:
            job.announced = True
            self._send(envelope, wire.Progress(job.rid, ahead, False))

    def _cancel(self, client: bytes, rid: int | None, reason: str) -> None:
        for job in self.sched.withdraw(client, rid):
            self.stats.record(job, WITHDRAWN, reason)
            self._send(job.envelope, wire.Error(CUT_MESSAGES[reason].format(limit=0), job.rid))
        for job in self.sched.running_of(client, rid):
            self._where[job].interrupt(job, reason)

    def _disconnects(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        assert self.monitor is not None
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            if event.get("event") != zmq.EVENT_DISCONNECTED:
                continue
            # A new connection may reuse the descriptor; its requests come after this event.
            for client in self._fd_clients.pop(int(event.get("value", -1)), ()):
                self._cancel(client, None, "disconnected")

    # -- running ---------------------------------------------------------------------------
    def _dispatch(self) -> None:
        if time.monotonic() < self._hold_until:
            return
        while self.idle:
            job = self.sched.next()
            if job is None:
                return
            worker = self.idle.pop()
            job.started = time.monotonic()
            job.rss_at_start = rss()
            self._where[job] = worker
            worker.jobs.put(job)
            if job.rid is not None:
                self._send(job.envelope, wire.Progress(job.rid, 0, True))

    def _finish(self) -> None:
        while True:
            try:
                worker, job, outcome, reason, reply = self.done.get_nowait()
            except queue.Empty:
                return
            if outcome == PART:
                self._send(job.envelope, reply)
                continue
            self.sched.done(job)
            self._where.pop(job, None)
            self.idle.append(worker)
            detail = reply.message if isinstance(reply, wire.Error) else ""
            self.stats.record(job, outcome, reason, detail)
            self._send(job.envelope, reply)

    def _enforce(self, now: float) -> None:
        for job in self.sched.expired(now):
            reason = "client-timeout" if job.by_client else "query-timeout"
            self.stats.record(job, WITHDRAWN, reason, "not started before its deadline")
            self._send(job.envelope, wire.Error(CUT_MESSAGES[reason].format(limit=job.limit_s), job.rid))
        for job in list(self.sched.running):
            if now >= job.deadline:
                self._where[job].interrupt(job, "client-timeout" if job.by_client else "query-timeout")

    def _manage_replies(self) -> None:
        waiting, self._manage_waiting = self._manage_waiting, []
        for future, envelope, msg, since in waiting:
            if not future.done():
                if time.monotonic() - since < MANAGE_TIMEOUT:
                    self._manage_waiting.append((future, envelope, msg, since))
                else:
                    what = f"the collector did not {msg.action} within {MANAGE_TIMEOUT:g} s"
                    self._send(envelope, wire.Error(what, msg.id))
                continue
            exc = future.exception()
            if exc is not None:
                self._send(envelope, wire.Error(str(exc), msg.id))
                continue
            table = pa.table({"run_id": pa.array(future.result(), type=pa.string())})
            self._send(envelope, wire.Result(self._ipc(table), id=msg.id))

    # -- status ----------------------------------------------------------------------------
    @staticmethod
    def _ipc(table: pa.Table) -> bytes:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue().to_pybytes()

    def _stats_table(self, what: str) -> pa.Table:
        if what == "counters":
            return self.stats.table()
        running = self.sched.running
        row = {
            "workers": len(self.workers),
            "reserved_for_service": self.config.query_reserved,
            "running_console": sum(1 for j in running if j.lane == CONSOLE),
            "running_service": sum(1 for j in running if j.lane == SERVICE),
            "queued": self.sched.queued,
            "duckdb_memory_limit": self.duckdb_memory_limit,
            "memory_bound_mib": round(self.bound / 2**20, 1),
            "rss_mib": round(rss() / 2**20, 1),
            "max_rows": self.max_rows,
            "max_bytes": self.max_bytes,
            "query_timeout_s": self.timeout,
        }
        return pa.Table.from_pylist([row])

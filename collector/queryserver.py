"""Read-only SQL over the query socket, answered on a thread with its own DuckDB cursor.

One statement per request, SELECT-like only; file and URL access are disabled on the
database (see :class:`traindash.collector.store.Store`); a row cap and a timeout bound every query.
Results travel as an Arrow IPC stream.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from pathlib import Path

import duckdb
import pyarrow as pa
import zmq

from traindash import security, wire
from traindash.query import QueryError, check_select, read_capped

log = logging.getLogger("traindash.collector.query")

POLL_MS = 100
MANAGE_TIMEOUT = 30.0


class QueryRefused(ValueError):
    """A request that is not a single read-only statement."""


def run_query(
    cursor: duckdb.DuckDBPyConnection, sql: str, max_rows: int, timeout: float
) -> tuple[bytes, bool]:
    """Arrow IPC bytes of the result (at most ``max_rows`` rows) and whether it was cut."""
    try:
        check_select(cursor, sql)
    except QueryError as exc:
        raise QueryRefused(str(exc)) from None
    timer = threading.Timer(timeout, cursor.interrupt)
    timer.start()
    try:
        table, truncated = read_capped(cursor, sql, max_rows)
    except duckdb.InterruptException:
        raise QueryRefused(f"query cancelled after {timeout:g} s") from None
    except duckdb.Error as exc:
        raise QueryRefused(str(exc).splitlines()[0]) from None
    finally:
        timer.cancel()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes(), truncated


class QueryServer(threading.Thread):
    """Answers ``query`` messages on a ROUTER socket until ``stop()``."""

    def __init__(
        self,
        ctx: zmq.Context,
        endpoint: str,
        cursor: duckdb.DuckDBPyConnection,
        timeout: float,
        max_rows: int,
        curve_secret: Path | None = None,
    ) -> None:
        super().__init__(name="traindash-query", daemon=True)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, 1024 * 1024)
        if curve_secret is not None:
            security.secure_server(self.sock, curve_secret)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError:
            self.sock.close(0)
            raise
        self.cursor = cursor
        self.timeout = timeout
        self.max_rows = max_rows
        self._stop_flag = threading.Event()
        # Writes (archive/delete) go to the collector's writer loop, which owns the store.
        self.manage_requests: queue.Queue[tuple[wire.Manage, Future]] = queue.Queue()

    def stop(self) -> None:
        self._stop_flag.set()
        self.cursor.interrupt()

    def run(self) -> None:
        try:
            while not self._stop_flag.is_set():
                if not self.sock.poll(POLL_MS):
                    continue
                frames = self.sock.recv_multipart()
                if len(frames) < 3:
                    continue
                envelope, body = frames[:-2], frames[-2:]
                self.sock.send_multipart(envelope + wire.encode(self._answer(body)))
        finally:
            self.sock.close(0)
            self.cursor.close()

    def _manage(self, msg: wire.Manage) -> wire.Message:
        future: Future = Future()
        self.manage_requests.put((msg, future))
        try:
            ids = future.result(timeout=MANAGE_TIMEOUT)
        except TimeoutError:
            return wire.Error(f"the collector did not {msg.action} within {MANAGE_TIMEOUT:g} s")
        except Exception as exc:
            return wire.Error(str(exc))
        sink = pa.BufferOutputStream()
        table = pa.table({"run_id": pa.array(ids, type=pa.string())})
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return wire.Result(sink.getvalue().to_pybytes())

    def _answer(self, frames: list[bytes]) -> wire.Message:
        try:
            msg = wire.decode(frames)
        except wire.WireError as exc:
            return wire.Error(f"malformed request: {exc}")
        if isinstance(msg, wire.Manage):
            return self._manage(msg)
        if not isinstance(msg, wire.Query):
            return wire.Error("expected a query message")
        limit = max(0, min(msg.max_rows, self.max_rows))
        try:
            data, truncated = run_query(self.cursor, msg.sql, limit, self.timeout)
        except QueryRefused as exc:
            return wire.Error(str(exc))
        except Exception as exc:  # a query must never end the server
            log.exception("query failed")
            return wire.Error(f"internal error: {type(exc).__name__}")
        return wire.Result(data, truncated)

"""Read-only SQL: through the collector's query socket, or the DuckDB file when none runs.

DuckDB lets no other process open a file while the collector holds it, so everyone reads
through the collector; only when no collector answers is the file opened, read-only.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import zmq

from traindash import security, wire
from traindash.config import ConfigError
from traindash.reports import sql_literal as sql_literal  # its home; re-exported for readers
from traindash.schema import SCHEMA_VERSION, describe

DEFAULT_TIMEOUT = 2.0
# Replies come from the collector this client asked, and a result may be large (the
# collector caps it); the producer-facing limits on message size do not apply here.
REPLY_LIMITS = wire.Limits(max_bin_len=2**32 - 1)
FILE_BATCH_ROWS = 1_000_000
CANCEL_LINGER_MS = 200


class QueryError(RuntimeError):
    """The query was refused or failed; the message is meant for the user."""


class CollectorUnavailable(QueryError):
    """No collector answered on the query endpoint in time."""


class CollectorBusy(QueryError):
    """A collector answered, but the query waited in its queue until the client gave up."""


class QueryTimeout(QueryError):
    """The query started but did not finish before the client gave up; it was cancelled."""


LANES = wire.LANES


def arrow_reader(con: Any, sql: str, batch_size: int = 10_000) -> pa.RecordBatchReader:
    """A streaming record-batch reader over a read-only query on a DuckDB connection."""
    return con.sql(sql).to_arrow_reader(batch_size)


def check_select(con: Any, sql: str) -> None:
    """Refuse anything but one read-only SELECT statement (a QueryError says why)."""
    import duckdb

    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(str(exc).splitlines()[0]) from None
    if len(statements) != 1:
        raise QueryError(f"one statement per query, got {len(statements)}")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryError(f"only read-only SELECT queries are answered, not {kind.name}")


def read_capped(con: Any, sql: str, max_rows: int, batch_size: int = 10_000) -> tuple[pa.Table, bool]:
    """At most ``max_rows`` rows of a query's result, and whether it had more."""
    reader = arrow_reader(con, sql, batch_size)
    batches, count, truncated = [], 0, False
    for batch in reader:
        if count + batch.num_rows > max_rows:
            batches.append(batch.slice(0, max_rows - count))
            truncated = True
            break
        batches.append(batch)
        count += batch.num_rows
    return pa.Table.from_batches(batches, schema=reader.schema), truncated


def read_arrow(*streams: bytes | memoryview) -> pa.Table:
    """The rows of Arrow IPC streams, in order; the columns point into the streams' memory
    (ZeroMQ's receive buffers), not copies of it."""
    tables = [pa.ipc.open_stream(pa.py_buffer(s)).read_all() for s in streams]
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _frames(parts: list[zmq.Frame]) -> list[bytes | memoryview]:
    """A reply's frames: the small ones as bytes, a result's Arrow frame left in ZeroMQ's
    buffer (the memoryview keeps it alive)."""
    return [p.bytes for p in parts[:2]] + [p.buffer for p in parts[2:]]


def collector_answers(query_endpoint: str, timeout: float = 0.5) -> bool:
    """True when a collector answers a trivial query on ``query_endpoint`` within ``timeout``."""
    try:
        with QueryClient(query_endpoint, timeout=timeout, lane="service") as client:
            client.query("SELECT 1")
        return True
    except CollectorUnavailable:
        return False
    except QueryError:  # it answered, if only to refuse
        return True


class QueryClient:
    """Sends read-only SQL to a collector and returns Arrow tables.

    ``lane`` is ``"console"`` for people's queries (the default) or ``"service"`` for the
    dashboard's and alerts' own, which keep a worker of their own (docs/queries.md). Each
    request carries the client's timeout, so the collector stops a query nobody waits for;
    a client that gives up also sends a cancel.
    """

    def __init__(
        self,
        endpoint: str,
        timeout: float = DEFAULT_TIMEOUT,
        ctx: zmq.Context | None = None,
        lane: str = "console",
    ) -> None:
        if lane not in LANES:
            raise ValueError(f"lane {lane!r} is not one of {', '.join(LANES)}")
        self.endpoint = endpoint
        self.timeout = timeout
        self.lane = lane
        self._own_ctx = ctx is None
        self.ctx = ctx or zmq.Context()
        self._sock: zmq.Socket | None = None
        self._ids = itertools.count(1)
        self.last_truncated = False

    def _socket(self) -> zmq.Socket:
        if self._sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            try:
                security.secure_client(sock)
                sock.connect(self.endpoint)
            except zmq.ZMQError as exc:
                sock.close(0)
                raise QueryError(f"bad query endpoint {self.endpoint!r}: {exc.strerror}") from None
            except ConfigError:
                sock.close(0)
                raise
            self._sock = sock
        return self._sock

    def query(self, sql: str, max_rows: int = 1_000_000, timeout: float | None = None) -> pa.Table:
        wait = self.timeout if timeout is None else timeout
        query = wire.Query(sql, max_rows, next(self._ids), self.lane, wait, arrow_frame=True)
        msg, parts = self._exchange(query, wait)
        self.last_truncated = msg.truncated
        return read_arrow(*parts, msg.arrow)

    def stats(self, what: str = "counters", timeout: float | None = None) -> pa.Table:
        """The collector's query counters (``counters``) or its query settings and load
        (``server``)."""
        msg = self.request(wire.Stats(what, next(self._ids)), timeout)
        return read_arrow(msg.arrow)

    def request(self, message: wire.Message, timeout: float | None = None) -> wire.Result:
        """Send one request on the query socket and return the collector's result (for a
        query that asks for ``arrow_frame``, use :meth:`query`, which keeps its parts)."""
        return self._exchange(message, timeout)[0]

    def _exchange(
        self, message: wire.Message, timeout: float | None = None
    ) -> tuple[wire.Result, list[bytes | memoryview]]:
        """The collector's result of one request, and the parts that came before it."""
        sock = self._socket()
        rid = getattr(message, "id", None)
        if isinstance(message, wire.Manage) and rid is None:
            message = wire.Manage(message.action, message.run_ids, next(self._ids))
            rid = message.id
        sock.send_multipart(wire.encode(message))
        wait = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + wait
        progress: wire.Progress | None = None
        parts: list[bytes | memoryview] = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(max(1, int(left * 1000))):
                raise self._gave_up(rid, progress, wait)
            try:
                msg = wire.decode(_frames(sock.recv_multipart(copy=False)), REPLY_LIMITS)
            except wire.WireError as exc:
                raise QueryError(f"malformed reply from the collector: {exc}") from None
            if isinstance(msg, wire.Progress):
                if msg.id == rid:
                    progress = msg
                continue
            if rid is not None and getattr(msg, "id", rid) not in (rid, None):
                continue  # the late answer to a request this client gave up on
            if isinstance(msg, wire.Part):
                parts.append(msg.arrow)
                continue
            if isinstance(msg, wire.Error):
                raise QueryError(msg.message)
            if not isinstance(msg, wire.Result):
                raise QueryError("unexpected reply from the collector")
            if msg.parts != len(parts):
                raise QueryError(
                    f"{msg.parts - len(parts)} of the {msg.parts} parts of the collector's answer "
                    "were lost on the way; try again"
                )
            return msg, parts

    def _gave_up(self, rid: int | None, progress: wire.Progress | None, wait: float) -> QueryError:
        """The error for a request not answered in ``wait`` seconds; cancels it if it can."""
        if progress is None or rid is None or self._sock is None:
            # Nobody there, or an older collector: a reply that arrives later would be read
            # as the answer to the next query, so this socket goes.
            self.close_socket()
            return CollectorUnavailable(f"no collector answered at {self.endpoint} within {wait:g} s")
        try:
            self._sock.send_multipart(wire.encode(wire.Cancel(rid)), zmq.NOBLOCK)
        except zmq.ZMQError:
            self.close_socket()
        if not progress.started:
            ahead = progress.ahead
            queued = (
                f"{ahead} quer{'y' if ahead == 1 else 'ies'} ahead of yours" if ahead else "no free worker"
            )
            return CollectorBusy(
                f"the collector at {self.endpoint} is busy: {queued}; yours did not start within "
                f"{wait:g} s and was withdrawn. Try again, or allow longer (--timeout)"
            )
        return QueryTimeout(
            f"the query ran longer than {wait:g} s and was cancelled (the collector at "
            f"{self.endpoint} is answering); narrow it, or allow longer (--timeout)"
        )

    def close_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def close(self) -> None:
        if self._sock is not None:
            # Let a cancel just sent leave before the socket goes.
            self._sock.close(linger=CANCEL_LINGER_MS)
            self._sock = None
        if self._own_ctx:
            self.ctx.term()

    def __enter__(self) -> QueryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def query_file(db: Path, sql: str, max_rows: int = 1_000_000) -> pa.Table:
    """Run read-only SQL on the DuckDB file directly (only when no collector holds it)."""
    import duckdb

    if not db.exists():
        raise QueryError(f"no collector answered and there is no database at {db}")
    try:
        con = duckdb.connect(str(db), read_only=True)
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        if "lock" in first.lower():
            raise QueryError(
                f"the collector holding {db} did not answer in time; try again or raise --timeout"
            ) from None
        raise QueryError(f"cannot open {db}: {first}") from None
    try:
        version = _schema_version(con)
        if version > SCHEMA_VERSION:
            raise QueryError(f"{db}: {describe(version)}")
        con.execute("SET enable_external_access = false")
        check_select(con, sql)
        return read_capped(con, sql, max_rows, batch_size=FILE_BATCH_ROWS)[0]
    except duckdb.Error as exc:
        first = str(exc).splitlines()[0]
        if version < SCHEMA_VERSION and isinstance(exc, duckdb.CatalogException):
            first += f" ({db} has {describe(version)})"
        raise QueryError(first) from None
    finally:
        con.close()


def _schema_version(con: Any) -> int:
    """The file's schema version (read-only readers never migrate; the collector does)."""
    try:
        row = con.execute("SELECT max(version) FROM schema_info").fetchone()
    except Exception:  # duckdb.CatalogException: a file from before schema_info
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def run_sql(
    sql: str, query_endpoint: str, db: Path, timeout: float = DEFAULT_TIMEOUT, max_rows: int = 1_000_000
) -> pa.Table:
    """Through the collector when one answers, else the file read-only."""
    with QueryClient(query_endpoint, timeout) as client:
        try:
            return client.query(sql, max_rows)
        except CollectorUnavailable:
            pass
    return query_file(db, sql, max_rows)

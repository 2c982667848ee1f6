"""A query worker: one thread, one DuckDB cursor, one query at a time.

The router thread (``collector/queryserver.py``) hands a worker a job; the router and the
memory guard (``collector/querymemory.py``) may interrupt it
(``cursor.interrupt()``) with a reason; the worker turns the job into a reply and an
outcome for the counters, and hands both back through ``on_done``. A result read in parts
hands each part to ``on_done`` as it comes, with the outcome :data:`PART`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from functools import partial

import duckdb
import pyarrow as pa

from traindash import wire
from traindash.collector.queryqueue import Job
from traindash.collector.queryrun import QueryRefused, ResultTooLarge, check_sql, classify, run_query
from traindash.collector.querystats import ANSWERED, CUT_OFF, FAILED, INTERRUPTED, REFUSED

log = logging.getLogger("traindash.collector.query")

# Why the server stopped a query -> the sentence its client reads.
CUT_MESSAGES = {
    "client-timeout": "query cancelled after {limit:g} s: your client's timeout passed",
    "query-timeout": "query cancelled after {limit:g} s (the collector's query_timeout)",
    "cancelled": "query cancelled by your client",
    "disconnected": "query cancelled: your client disconnected",
    "memory": "query cancelled: the collector's memory passed its bound ({bound})",
    "duckdb-memory": (
        "query cancelled: queries may hold {share} of the collector's DuckDB memory_limit "
        "({memory_limit}), the rest is kept for incoming rows; narrow the query or raise "
        "memory_limit"
    ),
    "ingest-first": "query cancelled: the collector needed DuckDB's memory to store incoming rows",
    "shutdown": "query cancelled: the collector is shutting down",
}


Outcome = tuple[str, str, wire.Message]  # (outcome, reason, reply)
PART = "part"  # not an outcome: one part of a result still being read, to send on


class Worker(threading.Thread):
    """Runs one query at a time on its own DuckDB cursor."""

    def __init__(
        self,
        index: int,
        cursor: duckdb.DuckDBPyConnection,
        max_bytes: int,
        bounds: dict[str, str],
        on_done: Callable[[Worker, Job, Outcome], None],
    ) -> None:
        super().__init__(name=f"traindash-query-{index}", daemon=True)
        self.cursor = cursor
        self.max_bytes = max_bytes
        self.bounds = bounds
        self.on_done = on_done
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.current: Job | None = None
        self._lock = threading.Lock()

    def interrupt(self, job: Job, reason: str) -> bool:
        """Stop ``job`` if it still runs here; the first reason given is kept."""
        with self._lock:
            running = self.current
            if job.cut is not None or running is not job:
                return False
            running.cut = reason
            self.cursor.interrupt()
            return True

    def run(self) -> None:
        while (job := self.jobs.get()) is not None:
            with self._lock:
                self.current = job
            outcome = self.execute(job)
            with self._lock:
                self.current = None
            self.on_done(self, job, outcome)

    def _part(self, job: Job, arrow: pa.Buffer) -> None:
        self.on_done(self, job, (PART, "", wire.Part(job.rid, memoryview(arrow))))  # type: ignore[arg-type]

    def execute(self, job: Job) -> Outcome:
        """The outcome of one job (it never raises: a query must never end the server)."""
        try:
            if job.cut is None:
                check_sql(self.cursor, job.sql, self.max_bytes)
                emit = partial(self._part, job) if job.arrow_frame and job.rid is not None else None
                answer = run_query(self.cursor, job.sql, job.max_rows, self.max_bytes, emit)
                reply = wire.Result(
                    memoryview(answer.arrow), answer.truncated, job.rid, job.arrow_frame, answer.parts
                )
                return (CUT_OFF, "row-cap", reply) if answer.truncated else (ANSWERED, "", reply)
        except QueryRefused as exc:
            return REFUSED, exc.reason, wire.Error(str(exc), job.rid)
        except ResultTooLarge as exc:
            return CUT_OFF, "byte-cap", wire.Error(str(exc), job.rid)
        except Exception as exc:
            reason, message = classify(exc)
            if job.cut is None and reason == "memory-limit":
                return CUT_OFF, reason, wire.Error(message, job.rid)
            if job.cut is None and reason == "error":
                if not isinstance(exc, duckdb.Error):
                    log.exception("query failed")
                    message = f"internal error: {type(exc).__name__}"
                return FAILED, reason, wire.Error(message, job.rid)
        reason = job.cut or "interrupted"
        text = CUT_MESSAGES.get(reason, "query interrupted").format(limit=job.limit_s, **self.bounds)
        return INTERRUPTED, reason, wire.Error(text, job.rid)

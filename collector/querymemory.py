"""The collector's memory bounds while queries run, and the guard that holds them.

Two bounds, both checked every ``INTERVAL_S`` while a query runs:

* DuckDB's buffer pool (``memory_limit``) is shared by queries and ingest; a commit that
  finds it full fails. Queries may hold at most ``QUERY_SHARE`` of it (sorts, hash tables,
  materialised results, large values); past that, the console queries are interrupted,
  and past ``SERVICE_SHARE`` the service lane's too. (DuckDB's own ``operator_memory_limit``
  did not bound sorts or hash tables in DuckDB 2.0.1 when measured, so it is not used.)
* The process's RSS: past :func:`memory_bound`, the queries that grew it are interrupted.

Neither stops a single value built in one uninterruptible call; ``queryrun.check_sql``
refuses those before they run.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

import duckdb

from traindash.collector.queryqueue import CONSOLE, Job
from traindash.config import CollectorConfig, parse_size

log = logging.getLogger("traindash.collector.query")

INTERVAL_S = 0.025
QUERY_SHARE = 0.6
SERVICE_SHARE = 0.85
# A query is blamed for the RSS past the bound only if RSS grew this much since it started.
GROWTH_SLACK = 32 * 1024 * 1024
BASE_HEADROOM = 512 * 1024 * 1024
# duckdb_memory() tags of what queries hold (the rest is table data, mostly evictable cache).
QUERY_TAGS = ("HASH_TABLE", "ORDER_BY", "COLUMN_DATA", "ALLOCATOR", "WINDOW")
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def memory_bound(config: CollectorConfig) -> int:
    """RSS in bytes past which queries are interrupted: DuckDB's memory_limit, about three
    copies of a full result per worker (the Arrow stream, its growth, the reply), 512 MiB."""
    if config.memory_bound:
        return parse_size(config.memory_bound)
    results = 3 * config.query_workers * config.query_max_bytes
    return parse_size(config.memory_limit) + results + BASE_HEADROOM


def rss() -> int:
    """This process's resident memory in bytes (0 where /proc is not there)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


class MemoryGuard(threading.Thread):
    """Interrupts running queries past the memory bounds (see the module docstring).

    ``running`` lists ``(job, interrupt)`` pairs of the queries running now; ``interrupt``
    takes a reason and is safe to call from this thread.
    """

    def __init__(
        self,
        probe: duckdb.DuckDBPyConnection,
        memory_limit: int,
        bound: int,
        running: Callable[[], Sequence[tuple[Job, Callable[[str], bool]]]],
    ) -> None:
        super().__init__(name="traindash-query-memory", daemon=True)
        self.probe = probe
        self.memory_limit = memory_limit
        self.bound = bound
        self.running = running
        self.stopping = threading.Event()
        self._probe_ok = True

    def query_memory(self) -> int:
        """Bytes of DuckDB's buffer pool that queries hold now."""
        if not self._probe_ok:
            return 0
        try:
            rows = self.probe.execute(
                "SELECT sum(memory_usage_bytes) FROM duckdb_memory() WHERE tag IN (SELECT unnest(?))",
                [list(QUERY_TAGS)],
            ).fetchall()
        except duckdb.Error as exc:
            self._probe_ok = False
            log.warning("cannot watch DuckDB's memory, only the RSS: %s", exc)
            return 0
        return int(rows[0][0] or 0)

    def run(self) -> None:
        try:
            while not self.stopping.wait(INTERVAL_S):
                running = self.running()
                if running:
                    self.check(running)
        finally:
            self.probe.close()

    def check(self, running: Sequence[tuple[Job, Callable[[str], bool]]]) -> None:
        used = self.query_memory()
        share = used / self.memory_limit if self.memory_limit else 0.0
        if share > QUERY_SHARE:
            console = [(j, stop) for j, stop in running if j.lane == CONSOLE]
            victims = console or (running if share > SERVICE_SHARE else [])
            if self._interrupt(victims, "duckdb-memory"):
                log.warning(
                    "queries hold %s of DuckDB's %s memory_limit (over %.0f%%)",
                    mib(used),
                    mib(self.memory_limit),
                    100 * (SERVICE_SHARE if not console else QUERY_SHARE),
                )
        current = rss()
        if current > self.bound:
            grew = [(j, stop) for j, stop in running if current - j.rss_at_start > GROWTH_SLACK]
            console = [(j, stop) for j, stop in grew if j.lane == CONSOLE]
            if self._interrupt(console or grew, "memory"):
                log.warning("collector RSS %s is past its bound %s", mib(current), mib(self.bound))

    @staticmethod
    def _interrupt(victims: Sequence[tuple[Job, Callable[[str], bool]]], reason: str) -> bool:
        hit = False
        for _job, stop in victims:
            hit = stop(reason) or hit
        return hit

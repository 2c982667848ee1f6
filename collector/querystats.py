"""Counters of the query server: what was answered, refused, cut off or interrupted, and why.

Every query that does not end in a plain answer is logged with its client, lane, duration
and reason, and counted by ``(lane, outcome, reason)``; ``traindash status`` shows the
counts (through a ``stats`` request on the query socket; see docs/queries.md).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from traindash.collector.queryqueue import Job

log = logging.getLogger("traindash.collector.query")

ANSWERED = "answered"
REFUSED = "refused"  # never run: not read-only, unparsable, an oversized value, queue full
CUT_OFF = "cut off"  # stopped by a cap: rows (answered, truncated), bytes, DuckDB memory
INTERRUPTED = "interrupted"  # stopped while running: timeout, cancel, disconnect, memory
WITHDRAWN = "withdrawn"  # left the queue before it started: timeout, cancel, disconnect
FAILED = "failed"  # an error in the SQL itself (unknown column, ...): not logged

OUTCOMES = (ANSWERED, REFUSED, CUT_OFF, INTERRUPTED, WITHDRAWN, FAILED)


@dataclass
class Tally:
    count: int = 0
    last_at: float = 0.0
    last_client: str = ""
    last_seconds: float = 0.0
    last_sql: str = ""
    last_detail: str = ""


def sql_head(sql: str, n: int = 80) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


class QueryStats:
    """Tallies by ``(lane, outcome, reason)``; read by the query server's thread only."""

    def __init__(self) -> None:
        self.tallies: dict[tuple[str, str, str], Tally] = {}
        self.answered: Counter[str] = Counter()

    def record(self, job: Job, outcome: str, reason: str = "", detail: str = "") -> None:
        now = time.monotonic()
        seconds = now - job.received
        if outcome == ANSWERED:
            self.answered[job.lane] += 1
            return
        tally = self.tallies.setdefault((job.lane, outcome, reason), Tally())
        tally.count += 1
        tally.last_at = time.time()
        tally.last_client = job.who()
        tally.last_seconds = seconds
        tally.last_sql = sql_head(job.sql)
        tally.last_detail = detail[:200]
        if outcome == FAILED:
            log.debug("query from %s failed after %.2f s: %s", job.who(), seconds, detail)
            return
        ran = f", ran {now - job.started:.2f} s" if job.started is not None else ""
        log.warning(
            "query %s (%s) from %s, %s lane, after %.2f s%s: %s [%s]",
            outcome,
            reason,
            job.who(),
            job.lane,
            seconds,
            ran,
            detail or reason,
            sql_head(job.sql),
        )

    def count(self, outcome: str, reason: str | None = None, lane: str | None = None) -> int:
        return sum(
            t.count
            for (ln, oc, rs), t in self.tallies.items()
            if oc == outcome and (reason is None or rs == reason) and (lane is None or ln == lane)
        )

    def table(self) -> pa.Table:
        """One row per (lane, outcome, reason), answered queries first."""
        rows: list[dict[str, Any]] = [
            {"lane": lane, "outcome": ANSWERED, "reason": "", "count": n}
            for lane, n in sorted(self.answered.items())
        ]
        for (lane, outcome, reason), t in sorted(self.tallies.items()):
            rows.append(
                {
                    "lane": lane,
                    "outcome": outcome,
                    "reason": reason,
                    "count": t.count,
                    "last_at": t.last_at,
                    "last_client": t.last_client,
                    "last_seconds": round(t.last_seconds, 3),
                    "last_sql": t.last_sql,
                    "last_detail": t.last_detail,
                }
            )
        schema = pa.schema(
            [
                ("lane", pa.string()),
                ("outcome", pa.string()),
                ("reason", pa.string()),
                ("count", pa.int64()),
                ("last_at", pa.timestamp("ms")),
                ("last_client", pa.string()),
                ("last_seconds", pa.float64()),
                ("last_sql", pa.string()),
                ("last_detail", pa.string()),
            ]
        )
        for r in rows:
            if r.get("last_at"):
                r["last_at"] = int(r["last_at"] * 1000)
        return pa.Table.from_pylist(rows, schema=schema)

"""traindash.connect(): 1M episodes x 25 columns into pandas, from the file and through a collector.

    .venv/bin/python bench/query_api.py [--quick]

A database gets one run of N episodes (1M; 100k with --quick) with the guide's columns plus
custom DOUBLE columns up to 25 columns in all. Then ``connect(...).sql("SELECT * FROM
episodes").df()`` is timed three times (median) from the closed file (read-only) and through
a running collector's query socket (Arrow IPC, in parts as it is read). Peers in the same
run: DuckDB's own ``con.sql(...).df()`` on the same file, and, after the collector rows, the
reply an older client gets (the whole stream in one msgpack map, the wire before parts).
"""

from __future__ import annotations

import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from common import median, print_table, row  # noqa: E402

COLUMNS = 25
REPEATS = 3


def build(db: Path, n: int) -> int:
    """One run of ``n`` episodes with 25 columns; returns the column count."""
    import duckdb

    from traindash.collector.migrations import upgrade_file

    upgrade_file(db)
    con = duckdb.connect(str(db))
    existing = [
        c
        for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'episodes'"
        ).fetchall()
    ]
    extra = [f"custom_{i}" for i in range(max(0, COLUMNS - len(existing)))]
    for name in extra:
        con.execute(f'ALTER TABLE episodes ADD COLUMN "{name}" DOUBLE')
    customs = "".join(f", random() AS {name}" for name in extra)
    con.execute(
        "INSERT INTO episodes BY NAME SELECT 'bench-run' AS run_id, i + 1 AS seq, "
        "TIMESTAMP '2026-01-01' + INTERVAL (i) MILLISECOND AS ts, i AS episode, random() AS profit, "
        "random() AS sharpe, random() AS win_rate, random() AS drawdown, (i % 50) AS num_trades, "
        f"random() AS epsilon, 1e-3 AS learning_rate{customs} FROM range({n}) t(i)"
    )
    con.execute("INSERT INTO runs (run_id, status, acked_seq) VALUES ('bench-run', 'finished', ?)", [n])
    (cols,) = con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'episodes'"
    ).fetchone()
    con.close()
    return int(cols)


def timed(fn: Any) -> tuple[float, Any]:
    started = time.perf_counter()
    value = fn()
    return time.perf_counter() - started, value


def runs_note(note: str, times: list[float]) -> str:
    return f"{note}; runs {', '.join(f'{t:.3f}' for t in times)} s"


def older_client_df(endpoint: str, sql: str, n: int, rid: int) -> Any:
    """The whole result in one msgpack reply, read as a client from before ``arrow_frame``."""
    import pyarrow as pa

    from traindash import wire
    from traindash.query import QueryClient

    with QueryClient(endpoint, timeout=120) as client:
        reply = client.request(wire.Query(sql, n, rid, "console", 120.0), 120.0)
        return pa.ipc.open_stream(reply.arrow).read_all().to_pandas()


def run(quick: bool = False) -> list[dict]:
    import duckdb

    import traindash
    from tests.harness import CollectorProcess, free_endpoints

    n = 100_000 if quick else 1_000_000
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="td-query-api-") as tmp:
        db = Path(tmp) / "td.duckdb"
        cols = build(db, n)
        sql = "SELECT * FROM episodes"
        note = f"{n:,} rows x {cols} columns, median of {REPEATS}"

        def duck() -> Any:
            with duckdb.connect(str(db), read_only=True) as con:
                return con.sql(sql).df()

        def from_file() -> Any:
            return traindash.connect(db=str(db), query=free_endpoints().query, timeout=0.05).sql(sql).df()

        def from_file_arrow() -> Any:
            con = traindash.connect(db=str(db), query=free_endpoints().query, timeout=0.05)
            return con.sql(sql).df(arrow_dtypes=True)

        cases = (
            ("duckdb con.sql().df() (floor)", duck),
            ("traindash.connect() file", from_file),
            ("traindash.connect() file, df(arrow_dtypes=True)", from_file_arrow),
        )
        for tool, fn in cases:
            times = []
            for _ in range(REPEATS):
                seconds, df = timed(fn)
                assert len(df) == n and len(df.columns) == cols, (len(df), len(df.columns))
                times.append(seconds)
            rows.append(row("query_api", tool, "to pandas", median(times), "s", note))
        collector = CollectorProcess(
            db=db,
            endpoints=free_endpoints(),
            log_path=Path(tmp) / "collector.log",
            extra_env={"TRAINDASH_QUERY_MAX_ROWS": str(n), "TRAINDASH_QUERY_MAX_BYTES": str(4 * 2**30)},
        )
        try:
            collector.start()
            con = traindash.connect(db=str(db), query=collector.endpoints.query)
            times = []
            for _ in range(REPEATS):
                seconds, df = timed(lambda: con.sql(sql).df())
                assert len(df) == n and len(df.columns) == cols, (len(df), len(df.columns))
                times.append(seconds)
            con.close()
            rows.append(
                row(
                    "query_api",
                    "traindash.connect() collector",
                    "to pandas",
                    median(times),
                    "s",
                    runs_note(note, times),
                )
            )
            older = []
            for i in range(REPEATS):
                seconds, df = timed(partial(older_client_df, collector.endpoints.query, sql, n, i + 1))
                assert len(df) == n and len(df.columns) == cols, (len(df), len(df.columns))
                older.append(seconds)
            rows.append(
                row(
                    "query_api",
                    "collector, one msgpack reply (older client)",
                    "to pandas",
                    median(older),
                    "s",
                    runs_note(note, older),
                )
            )
        finally:
            collector.kill()
    return rows


if __name__ == "__main__":
    print_table("traindash.connect() to pandas", run("--quick" in sys.argv))

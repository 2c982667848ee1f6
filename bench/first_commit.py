"""First commit of a run with many distinct custom metric names, and what a new column costs.

    .venv/bin/python bench/first_commit.py [--quick]

* First commit: a run logs 20 new custom metrics per episode (per-layer gradient norms,
  ``layer17_k3_grad_norm``), N distinct names over N/20 episodes, into a fresh collector
  and database. Measured: from the first log call to ``flush()`` returning (the collector
  has committed and acknowledged every record), for N = 100, 500, 2,000 and 10,000; and how
  many names became ``episodes`` columns (the rest, past the collector's cap, are kept in
  the ``extra`` JSON column).
* Width: one ``ALTER TABLE ... ADD COLUMN`` (DuckDB takes one per statement), inside a
  transaction, when the table is already N columns wide, and a 1,000-row insert of plain
  rows into it (DuckDB alone, no collector): the figures the collector's cap on custom
  columns per table rests on (``MAX_CUSTOM_COLUMNS`` in collector/tables.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, print_table, row  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.harness import CollectorProcess, free_endpoints  # noqa: E402

BENCH = "first_commit"
PER_EPISODE = 20
FLUSH_TIMEOUT = 300.0


def first_commit(names: int, tmp: Path) -> list[dict]:
    """Seconds from the first log call until a run bringing ``names`` new names is acked."""
    from traindash.producer import MetricsLogger

    work = tmp / f"n{names}"
    work.mkdir()
    c = CollectorProcess(db=work / "fc.duckdb", endpoints=free_endpoints(), log_path=work / "collector.log")
    c.start()
    try:
        lg = MetricsLogger("bench-wide", output_dir=str(work), config=c.producer_config())
        t0 = time.perf_counter()
        for ep in range(names // PER_EPISODE):
            lg.log_episode(ep, float(ep), **{f"layer{ep}_k{k}_grad_norm": ep + k / 100 for k in range(20)})
        acked = lg.flush(timeout=FLUSH_TIMEOUT)
        took = time.perf_counter() - t0
        lg.close(timeout=30)
        columns = (
            c.query(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_name = 'episodes' AND column_name LIKE 'layer%'",
                timeout=FLUSH_TIMEOUT,
            )
            .column(0)[0]
            .as_py()
        )
    finally:
        c.stop(timeout=120)
    tool, label = "traindash", f"{names:,} names"
    if not acked:
        why = f"not within {FLUSH_TIMEOUT:g} s"
        return [row(BENCH, tool, f"{label}: first commit acked", None, "s", why)]
    return [
        row(BENCH, tool, f"{label}: first commit acked", took, "s", "first log call -> flush() returns"),
        row(BENCH, tool, f"{label}: as columns", columns, "names", "the rest in the extra JSON column"),
    ]


def width_cost(widths: list[int], tmp: Path) -> list[dict]:
    """Per table width: ms per ADD COLUMN (50 in one transaction), and a 1,000-row insert."""
    import duckdb
    import pyarrow as pa

    con = duckdb.connect(str(tmp / "width.duckdb"))
    con.execute("CREATE TABLE t (run_id VARCHAR, seq BIGINT, profit DOUBLE, extra JSON)")
    rows, width, probe, batch = [], 0, 50, 1_000
    for target in widths:
        con.execute("BEGIN")
        while width < target:
            con.execute(f'ALTER TABLE t ADD COLUMN "w{width}" DOUBLE')
            width += 1
        con.execute("COMMIT")
        con.execute("BEGIN")
        t0 = time.perf_counter()
        for i in range(probe):
            con.execute(f'ALTER TABLE t ADD COLUMN "p{target}_{i}" DOUBLE')
        ms = (time.perf_counter() - t0) / probe * 1e3
        con.execute("ROLLBACK")
        # Plain rows (no custom fields) still pay for every column of the table.
        plain = pa.table({"run_id": ["r"] * batch, "seq": range(batch), "profit": [1.0] * batch})
        con.register("_rows", plain)
        t0 = time.perf_counter()
        con.execute("INSERT INTO t BY NAME SELECT * FROM _rows")
        insert_ms = (time.perf_counter() - t0) * 1e3
        con.unregister("_rows")
        at = f"at {target:,} columns"
        rows.append(row(BENCH, "duckdb", f"ADD COLUMN {at}", ms, "ms", "per column"))
        rows.append(row(BENCH, "duckdb", f"1,000-row insert {at}", insert_ms, "ms", "plain rows"))
    con.close()
    return rows


def run(quick: bool = False) -> list[dict]:
    sizes = [100, 500, 2_000] if quick else [100, 500, 2_000, 10_000]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-first-commit-") as name:
        tmp = Path(name)
        for n in sizes:
            try:
                rows += first_commit(n, tmp)
            except Exception as exc:  # one size failing must not lose the others
                rows.append(row(BENCH, "traindash", f"{n:,} names: first commit acked", None, "s", str(exc)))
        rows += width_cost([100, 500, 1_000] if quick else [100, 500, 1_000, 2_000], tmp)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    args = parser.parse_args()
    print_table("First commit with many custom names", run(quick=args.quick))


if __name__ == "__main__":
    main()

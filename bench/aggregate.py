"""Seeds and sweeps (issue 17): 100 runs of 100,000 episodes aggregated onto a 1,000-point grid.

    .venv/bin/python bench/aggregate.py [--quick]

The database is built directly with SQL ``range`` (10M episodes, rows interleaved across runs
as a collector commits them), then :func:`traindash.aggregate.compare`, the function behind
``traindash compare --group-by`` and the compare page's bands, groups the runs (every
hyperparameter but the seed) and returns every group's curve with its bootstrap band and
final scores. Timed through a real collector's query socket (what the CLI and the ui do) and
through the file read-only (the CLI with no collector running); median of 3 after a warm-up.

The machine is shared: with a load average of 20 or more on 2 cores, wall time mostly
measures waiting for a core. Reading the file in-process, the CPU seconds (all threads,
DuckDB's included) say what the aggregation itself costs; DuckDB's bare ``GROUP BY run_id``
over the same rows, timed the same way, is the floor for any per-run aggregation.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import duckdb  # noqa: E402
from common import ROOT, print_table, row  # noqa: E402

from traindash.aggregate import compare  # noqa: E402
from traindash.cli.grouped import Source  # noqa: E402
from traindash.collector.store import Store  # noqa: E402
from traindash.ui.processes import Children, start_collector_on_free_ports  # noqa: E402

BENCHMARK = "aggregate"
RUNS = 100
POINTS = 1000
REPEATS = 3
SEEDS = 5  # 20 configurations x 5 seeds; also shown: 4 architectures x 25 runs


def build(path: Path, runs: int, episodes: int, seeds: int) -> None:
    """A traindash file (the collector's migrations) filled with SQL ``range``."""
    Store(path).close()
    con = duckdb.connect(str(path))
    try:
        con.execute(
            f"""INSERT INTO runs (run_id, experiment, name, status, hyperparameters, tags, started_at)
            SELECT printf('run-%03d', r), 'bench', printf('cfg-%02d', r // {seeds}), 'finished',
                   json_object('lr', 1e-4 * (1 + r // {seeds}), 'gamma', 0.99, 'seed', r % {seeds},
                               'arch', r // 25),
                   ['bench'], now()
            FROM range({runs}) t(r)"""
        )
        # one row per (episode, run) in that order: runs interleaved, as commits arrive
        con.execute(
            f"""INSERT INTO episodes (run_id, seq, ts, episode, profit, env_step)
            SELECT printf('run-%03d', i % {runs}), i // {runs} + 1, now(), i // {runs} + 1,
                   (1 + (i % {runs}) // {seeds}) * (1 - exp(-(i // {runs}) / ({episodes} / 5.0)))
                     + 0.5 * (random() - 0.5),
                   (i // {runs} + 1) * (150.0 + i % {runs})
            FROM range({runs * episodes}) t(i)"""
        )
    finally:
        con.close()


def _time(fn: Any) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``fn`` (CPU: this process, all its threads, DuckDB's
    included), after a warm-up call."""
    fn()  # warm-up: file pages and imports
    walls, cpus, out = [], [], None
    for _ in range(REPEATS):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def _load() -> str:
    return f"load average {os.getloadavg()[0]:.0f} on {os.cpu_count()} CPUs"


def measure(
    tool: str, source: Any, episodes: int, note: str, cpu_row: bool, **options: Any
) -> list[dict[str, Any]]:
    seconds, cpu, result = _time(lambda: compare(source, points=POINTS, **options))
    groups = [g for g in result.groups if g.runs]
    n = sorted({len(g.runs) for g in groups})
    detail = f"{len(groups)} groups of {'/'.join(map(str, n))} runs, {len(groups[0].x)} grid points; {note}"
    rows = [
        row(BENCHMARK, tool, f"seconds (median of {REPEATS})", seconds, "s", f"{detail}; {_load()}"),
        row(BENCHMARK, tool, "episodes/s", RUNS * episodes / seconds, "rows/s", detail),
    ]
    if cpu_row:  # in-process DuckDB: the CPU it took, whatever else the machine was doing
        rows.append(row(BENCHMARK, tool, f"CPU seconds (median of {REPEATS})", cpu, "s", detail))
    return rows


def floor(con: Any, size: str) -> list[dict[str, Any]]:
    """The same episodes through DuckDB's cheapest per-run aggregate, timed the same way: what
    any per-run reduction costs on this machine at this moment (its load varies a lot)."""
    sql = "SELECT run_id, count(*), max(episode) FROM episodes GROUP BY run_id"
    seconds, cpu, _ = _time(lambda: con.sql(sql).arrow().read_all())
    note = "one scan and GROUP BY run_id, no grid: a floor for any per-run aggregation"
    tool = f"DuckDB GROUP BY run_id, {size}, file"
    return [
        row(BENCHMARK, tool, f"seconds (median of {REPEATS})", seconds, "s", f"{note}; {_load()}"),
        row(BENCHMARK, tool, f"CPU seconds (median of {REPEATS})", cpu, "s", note),
    ]


def run(quick: bool = False) -> list[dict[str, Any]]:
    episodes = 10_000 if quick else 100_000
    size = f"{RUNS} runs x {episodes:,} episodes"
    groups = f"{RUNS // SEEDS} x {SEEDS} seeds"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="td-aggbench-") as tmp:
        tmpdir = Path(tmp)
        db = tmpdir / "td.duckdb"
        started = time.perf_counter()
        build(db, RUNS, episodes, SEEDS)
        print(f"built {size} in {time.perf_counter() - started:.1f} s ({_load()})", file=sys.stderr)
        children = Children(tmpdir)
        try:
            ep = start_collector_on_free_ports(children, db, cwd=ROOT)
            source = Source(ep.query, db, timeout=10.0)
            try:
                for x in ("episode", "env_step"):
                    tool = f"compare(), {size}, {groups}, x={x}, collector"
                    rows += measure(tool, source, episodes, "IQM, 200-rep bands", False, x=x)
            finally:
                source.close()
        finally:
            children.stop()
        with duckdb.connect(str(db), read_only=True) as con:
            tool = f"compare(), {size}, {groups}, x=episode, file"
            rows += measure(tool, con, episodes, "IQM, no collector", True)
            tool = f"compare(), {size}, 4 x 25 runs, x=episode, file"
            rows += measure(tool, con, episodes, "IQM, --group-by arch", True, group_by="arch")
            rows += floor(con, size)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 episodes per run, for a smoke check")
    args = parser.parse_args()
    print_table("traindash compare --group-by: aggregation onto a 1,000-point grid", run(args.quick))


if __name__ == "__main__":
    main()

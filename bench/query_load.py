"""Ingest while someone runs heavy SQL: rows/s committed with and without a console query.

    .venv/bin/python bench/query_load.py [--quick]

One collector, one database. Rounds alternate: 2 trainer processes log flat out and flush
(rows/s = rows committed / first log call -> last acknowledgement, as bench/ingest_scale.py
measures it), first with the query socket idle, then while a console client runs heavy
queries back to back (an aggregate over the growing ``episodes`` table and a CPU-bound scan of
1,000M generated rows, each allowed 30 s). The figure is the median over pairs of rounds of
loaded / idle rows/s (a pair runs back to back, which cancels slow drifts in the machine's
load). Both sides share the machine's cores with the trainers: an end-to-end figure. During
the loaded rounds a service-lane client also times a trivial query every 100 ms.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, percentile, print_table, row  # noqa: E402
from ingest_scale import Trainers, _collector, _warm_up  # noqa: E402

BENCH = "query_load"
TRAINERS = 2
HEAVY = (
    "SELECT run_id, CAST(episode / 100 AS BIGINT) AS bucket, avg(profit), stddev(sharpe), "
    "quantile_cont(drawdown, 0.5) FROM episodes GROUP BY ALL ORDER BY bucket",
    "SELECT sum(i * random()) FROM range(1000000000) t(i)",
)


class Load(threading.Thread):
    """Heavy console queries back to back, and a trivial service-lane query every 100 ms."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.heavy_done = 0
        self.heavy_failed = 0
        self.trivial_ms: list[float] = []
        self.prober = threading.Thread(target=self._probe, daemon=True)

    def run(self) -> None:
        from traindash.query import QueryClient, QueryError

        self.prober.start()
        with QueryClient(self.endpoint, timeout=30) as client:
            k = 0
            while not self.stop.is_set():
                try:
                    client.query(HEAVY[k % len(HEAVY)])
                    self.heavy_done += 1
                except QueryError:
                    self.heavy_failed += 1
                k += 1

    def _probe(self) -> None:
        from traindash.query import QueryClient, QueryError

        with QueryClient(self.endpoint, timeout=10, lane="service") as client:
            while not self.stop.wait(0.1):
                started = time.perf_counter()
                try:
                    client.query("SELECT count(*) FROM runs")
                except QueryError:
                    continue
                self.trivial_ms.append((time.perf_counter() - started) * 1e3)

    def finish(self) -> None:
        self.stop.set()
        self.join(60)
        self.prober.join(15)


def _round(collector: Any, episodes: int, tmp: Path) -> float:
    before = collector.scalar("SELECT count(*) FROM episodes")
    trainers = Trainers(collector, TRAINERS, episodes, 0, tmp)
    try:
        trainers.start()
        res = trainers.results(timeout=900)
    finally:
        trainers.kill()
    after = collector.scalar("SELECT count(*) FROM episodes")
    if after - before != TRAINERS * episodes or not all(r["acked"] for r in res):
        raise RuntimeError(f"count mismatch: {after - before} rows for {TRAINERS * episodes} logged")
    span = max(r["t_acked"] for r in res) - min(r["t_first"] for r in res)
    return TRAINERS * episodes / span


def run(quick: bool = False) -> list[dict]:
    """Rows in the bench/run.py contract."""
    episodes = 50_000 if quick else 200_000
    repeats = 1 if quick else 3
    idle: list[float] = []
    loaded: list[float] = []
    loads: list[Load] = []
    with tempfile.TemporaryDirectory(prefix="bench-query-load-") as tmp_name:
        tmp = Path(tmp_name)
        collector = _collector(tmp, "query-load")
        try:
            collector.start()
            _warm_up(collector, tmp)
            for _ in range(repeats):
                idle.append(_round(collector, episodes, tmp))
                load = Load(collector.endpoints.query)
                load.start()
                time.sleep(1.0)  # the first heavy query is under way
                try:
                    loaded.append(_round(collector, episodes, tmp))
                finally:
                    load.finish()
                loads.append(load)
            collector.stop()
        finally:
            collector.kill()
    ratios = [b / a for a, b in zip(idle, loaded, strict=True)]
    probes = sorted(ms for load in loads for ms in load.trivial_ms)
    heavy = sum(load.heavy_done for load in loads)
    failed = sum(load.heavy_failed for load in loads)
    setup = f"{TRAINERS} trainers x {episodes:,} episodes flat out; median of {repeats}"
    return [
        row(BENCH, "traindash, query socket idle", "rows/s committed", median(idle), "rows/s", setup),
        row(
            BENCH,
            "traindash, heavy console query running",
            "rows/s committed",
            median(loaded),
            "rows/s",
            f"{setup}; {heavy} heavy queries finished, {failed} cut off, during the rounds",
        ),
        row(
            BENCH,
            "traindash",
            "rows/s with / without heavy query",
            median(ratios),
            "x",
            f"median over {repeats} pairs of rounds (idle, then loaded), range "
            f"{min(ratios):.2f} .. {max(ratios):.2f}; the query and the ingest share the cores",
        ),
        row(
            BENCH,
            "traindash, service lane",
            "trivial query p50 under load",
            percentile(probes, 50) if probes else None,
            "ms",
            f"{len(probes)} probes; p99 {percentile(probes, 99):.1f} ms" if probes else "no probe answered",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small runs, for a smoke check")
    args = parser.parse_args()
    print_table("Ingest with and without a heavy console query", run(quick=args.quick))


if __name__ == "__main__":
    main()

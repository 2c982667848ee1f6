"""1,000 streams into one collector: how long each close() takes, and every row exactly once.

    .venv/bin/python bench/fanin_close.py [--quick]

The reproduction of the close-at-scale issue (shared/repro/fanin_streams.py): P processes,
each with L MetricsLoggers (one stream each) logging 2 episodes/s for D seconds into one
collector, then closing them one after another (``close(timeout=120)``). Full run: 10 x
100 streams for 20 s; ``--quick``: 4 x 50 for 5 s. Reported: the slowest close(), the
median close(), the whole run's wall time, unacknowledged records left at close, and
whether the database holds every row exactly once.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, median, print_table, row  # noqa: E402

sys.path.insert(0, str(ROOT))
from tests.harness import CollectorProcess, free_endpoints  # noqa: E402

BENCH = "fanin_close"
RATE = 2.0
CLOSE_TIMEOUT = 120.0


def child(k: int, loggers: int, seconds: float, endpoints: list[str], output_dir: str) -> None:
    """One trainer process: ``loggers`` streams, paced episodes, then close them in turn."""
    from traindash.config import Endpoints, ProducerConfig
    from traindash.producer import MetricsLogger

    config = ProducerConfig(endpoints=Endpoints(*endpoints))
    lgs = [MetricsLogger(f"fan{k}", output_dir=output_dir, config=config) for _ in range(loggers)]
    n, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        for lg in lgs:
            lg.log_episode(episode=n, profit=float(n), sharpe=0.1, win_rate=0.5)
        n += 1
        time.sleep(max(0.0, t0 + n / RATE - time.monotonic()))
    closes, left = [], 0
    for lg in lgs:
        c0 = time.monotonic()
        lg.close(timeout=CLOSE_TIMEOUT)
        closes.append(time.monotonic() - c0)
        left += lg._sender.pending
    print(json.dumps({"episodes": n, "loggers": loggers, "closes": closes, "left": left}), flush=True)


def fan_in(processes: int, loggers: int, seconds: float, tmp: Path) -> list[dict]:
    c = CollectorProcess(db=tmp / "fanin.duckdb", endpoints=free_endpoints(), log_path=tmp / "collector.log")
    c.start()
    ep = c.endpoints
    try:
        t0 = time.monotonic()
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", str(k), str(loggers), str(seconds)]
                + [ep.ingest, ep.rows, ep.query, str(tmp / f"logs{k}")],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
            )
            for k in range(processes)
        ]
        results = []
        try:
            for p in procs:
                out, _ = p.communicate(timeout=seconds + 600)
                if p.returncode:
                    raise RuntimeError(f"a trainer process exited with {p.returncode}")
                results.append(json.loads(out.strip().splitlines()[-1]))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        wall = time.monotonic() - t0
        stored = c.query(
            "SELECT count(*) AS n, count(*) - count(DISTINCT (run_id, seq)) AS dup FROM episodes"
        ).to_pylist()[0]
    finally:
        c.stop(timeout=120)
    closes = sorted(t for r in results for t in r["closes"])
    expected = sum(r["episodes"] * r["loggers"] for r in results)
    streams = processes * loggers
    tool = f"traindash, {streams:,} streams ({processes} x {loggers}, {RATE:g}/s, {seconds:g} s)"
    once = stored["n"] == expected and stored["dup"] == 0
    return [
        row(BENCH, tool, "slowest close()", closes[-1], "s"),
        row(BENCH, tool, "median close()", median(closes), "s"),
        row(BENCH, tool, "total", wall, "s", "start of logging -> last close() returned"),
        row(BENCH, tool, "unacknowledged at close", sum(r["left"] for r in results), "records"),
        row(
            BENCH,
            tool,
            "rows exactly once",
            float(once),
            "1 = yes",
            f"{stored['n']:,} of {expected:,} rows, {stored['dup']} duplicates",
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-fanin-") as name:
        return fan_in(4, 50, 5.0, Path(name)) if quick else fan_in(10, 100, 20.0, Path(name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200 streams for 5 s, for a smoke check")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        k, loggers, seconds, *endpoints, output_dir = args.child
        child(int(k), int(loggers), float(seconds), endpoints, output_dir)
        return
    print_table("Closing 1,000 streams", run(quick=args.quick))


if __name__ == "__main__":
    main()

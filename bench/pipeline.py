"""Pipeline benchmarks (issue 2): log-call cost, collector throughput, memory.

    python bench/pipeline.py [--quick]

* ``log_episode`` p50/p99 in the training process, beside a bare function that appends
  the same arguments to a deque, timed the same way in the same run.
* Collector sustained committed rows/s with 2 trainer processes logging flat out.
* RSS a MetricsLogger adds to a trainer, and the collector's RSS after millions of rows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import CollectorProcess, env_for, free_endpoints, wait_for  # noqa: E402


def _percentiles(samples: list[int]) -> tuple[float, float]:
    samples.sort()
    n = len(samples)
    return samples[n // 2] / 1000, samples[min(n - 1, int(n * 0.99))] / 1000


def _time_calls(fn, n: int) -> list[int]:  # type: ignore[no-untyped-def]
    clock = time.perf_counter_ns
    out = [0] * n
    for i in range(n):
        t0 = clock()
        fn(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)
        out[i] = clock() - t0
    return out


def log_call_cost(collector: CollectorProcess, calls: int) -> list[dict]:
    """p50/p99 of log_episode vs a bare deque append, interleaved in rounds."""
    from traindash.producer import MetricsLogger

    q: deque = deque(maxlen=1_000_000)

    def bare(
        episode,
        profit,
        sharpe=0.0,
        win_rate=0.0,
        drawdown=0.0,
        num_trades=0,  # type: ignore[no-untyped-def]
        epsilon=0.0,
        learning_rate=0.0,
        **kwargs,
    ):
        q.append((episode, profit, sharpe, win_rate, drawdown, num_trades, epsilon, learning_rate, kwargs))

    with tempfile.TemporaryDirectory() as tmp:
        logger = MetricsLogger("bench-log-call", output_dir=tmp, config=collector.producer_config())
        _time_calls(logger.log_episode, 20_000)
        _time_calls(bare, 20_000)
        rounds = 5
        ours: list[int] = []
        floor: list[int] = []
        for _ in range(rounds):
            ours += _time_calls(logger.log_episode, calls // rounds)
            floor += _time_calls(bare, calls // rounds)
        assert logger.flush(timeout=60), "collector did not acknowledge the benchmark rows"
        logger.close()
    p50, p99 = _percentiles(ours)
    b50, b99 = _percentiles(floor)
    note = f"{calls} calls each, interleaved; includes perf_counter_ns overhead"
    return [
        {
            "benchmark": "log_call",
            "tool": "traindash log_episode",
            "metric": "p50",
            "value": p50,
            "unit": "us",
            "note": note,
        },
        {
            "benchmark": "log_call",
            "tool": "traindash log_episode",
            "metric": "p99",
            "value": p99,
            "unit": "us",
            "note": note,
        },
        {
            "benchmark": "log_call",
            "tool": "bare deque.append",
            "metric": "p50",
            "value": b50,
            "unit": "us",
            "note": note,
        },
        {
            "benchmark": "log_call",
            "tool": "bare deque.append",
            "metric": "p99",
            "value": b99,
            "unit": "us",
            "note": note,
        },
        {
            "benchmark": "log_call",
            "tool": "traindash / bare",
            "metric": "p50 ratio",
            "value": p50 / b50,
            "unit": "x",
            "note": "target within 5x",
        },
    ]


TRAINER = r"""
import json, sys, time
from traindash.producer import MetricsLogger
from traindash.config import ProducerConfig, Endpoints
n, ingest, rows, query, out = int(sys.argv[1]), *sys.argv[2:6]
cfg = ProducerConfig(endpoints=Endpoints(ingest, rows, query), close_timeout=120)
lg = MetricsLogger("bench-ingest", output_dir=out, config=cfg)
log = lg.log_episode
t0 = time.time()
for i in range(n):
    log(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)
t1 = time.time()
lg.close()
print(json.dumps({"start": t0, "logged": t1, "closed": time.time(), "run_id": lg.run_id}))
"""


def collector_throughput(collector: CollectorProcess, trainers: int, per_trainer: int) -> list[dict]:
    """Rows/s committed while ``trainers`` processes log flat out."""
    before = collector.scalar("SELECT count(*) FROM episodes")
    e = collector.endpoints
    with tempfile.TemporaryDirectory() as tmp:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", TRAINER, str(per_trainer), e.ingest, e.rows, e.query, tmp],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                env=env_for(e, collector.db),
                text=True,
            )
            for _ in range(trainers)
        ]
        try:
            outs = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
        finally:
            for p in procs:
                p.kill()
    total = trainers * per_trainer
    start = min(o["start"] for o in outs)
    wait_for(
        lambda: collector.scalar("SELECT count(*) FROM episodes") - before >= total, 120, "all benchmark rows"
    )
    # The trainers' close() returns once the collector acknowledged (committed) everything.
    done = max(o["closed"] for o in outs)
    logged = max(o["logged"] for o in outs)
    rate = total / (done - start)
    stored = collector.scalar("SELECT count(*) FROM episodes") - before
    return [
        {
            "benchmark": "ingest",
            "tool": f"collector, {trainers} trainers flat out",
            "metric": "committed rows/s",
            "value": rate,
            "unit": "rows/s",
            "note": f"{total} rows ({stored} stored) in {done - start:.2f} s; logging took "
            f"{logged - start:.2f} s",
        },
    ]


MEMORY = r"""
import json, os, sys, time, psutil
import numpy, zmq, msgpack, pyarrow
from traindash.producer import MetricsLogger
from traindash.config import ProducerConfig, Endpoints
n, ingest, rows, query, out = int(sys.argv[1]), *sys.argv[2:6]
proc = psutil.Process()
base = proc.memory_info().rss
cfg = ProducerConfig(endpoints=Endpoints(ingest, rows, query))
lg = MetricsLogger("bench-memory", output_dir=out, config=cfg)
peak = 0
for i in range(n):
    lg.log_episode(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001, custom_score=0.5)
    if i % 5 == 0:
        lg.log_model_metrics(0.5, q_values=[1.0, 2.0, 3.0, 4.0])
    if i % 100_000 == 0:
        peak = max(peak, proc.memory_info().rss)
lg.flush(60)
peak = max(peak, proc.memory_info().rss)
after = proc.memory_info().rss
lg.close()
print(json.dumps({"base": base, "peak": peak, "after": after}))
"""


def memory(collector: CollectorProcess, episodes: int) -> list[dict]:
    import psutil

    e = collector.endpoints
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY, str(episodes), e.ingest, e.rows, e.query, tmp],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
            env=env_for(e, collector.db),
        )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    mb = 1024 * 1024
    rows = collector.scalar("SELECT (SELECT count(*) FROM episodes) + (SELECT count(*) FROM model_metrics)")
    assert collector.proc is not None
    col_rss = psutil.Process(collector.proc.pid).memory_info().rss
    return [
        {
            "benchmark": "memory",
            "tool": "MetricsLogger",
            "metric": "RSS added (peak)",
            "value": (res["peak"] - res["base"]) / mb,
            "unit": "MB",
            "note": f"{episodes} episodes + {episodes // 5} model updates, after imports",
        },
        {
            "benchmark": "memory",
            "tool": "collector",
            "metric": "RSS",
            "value": col_rss / mb,
            "unit": "MB",
            "note": f"after {rows} rows committed in this session",
        },
    ]


def run(quick: bool = False) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        c = CollectorProcess(
            db=Path(tmp) / "bench.duckdb", endpoints=free_endpoints(), log_path=Path(tmp) / "collector.log"
        )
        c.start()
        try:
            rows = log_call_cost(c, 50_000 if quick else 200_000)
            rows += collector_throughput(c, 2, 200_000 if quick else 1_000_000)
            rows += memory(c, 200_000 if quick else 1_000_000)
        finally:
            c.stop()
    return rows


def print_table(rows: list[dict]) -> None:
    for r in rows:
        value = "n/a" if r["value"] is None else f"{r['value']:,.2f}"
        print(
            f"{r['benchmark']:<10} {r['tool']:<36} {r['metric']:<18} {value:>14} {r['unit']:<7} {r['note']}"
        )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer calls and rows")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print_table(run(args.quick))

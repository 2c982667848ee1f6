"""System-metrics sampler cost: CPU time per sample, and what sampling adds to a training loop.

    .venv/bin/python bench/system_sampler.py [--quick]

1. CPU per sample: ``SystemSampler.sample()`` (this process, the host and every GPU NVML
   sees) timed with the thread's own CPU clock, many times; median and p90.
2. Training-loop overhead: the loop of bench/overhead.py (1 ms of work per episode,
   ``log_episode`` each episode, a real collector, the thread sender) with sampling every
   ``FAST`` s against sampling off, switched between blocks on one live logger; blocks
   alternate on/off (the order flips each round). The sender thread's own CPU clock gives
   its CPU per sample (on minus off, per sample taken): the time it holds the GIL, so the
   most a trainer that never releases the GIL can lose per sample; once every 10 s (the
   default) that is the overhead bound. The wall-time difference is reported too, but on
   this shared machine it is mostly noise. (The process sender samples in its shipper
   process, which shares no GIL with the trainer: its cost is row 1's CPU, elsewhere.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, percentile, print_table, row  # noqa: E402
from overhead import _sender_clock, block, busy_wait, calibrated_work  # noqa: E402

BENCH = "system_metrics"
FAST = 0.1  # s between samples in the overhead rounds (the sender's own wake-up period)
DEFAULT = 10.0  # the default interval, for the scaled row
WARMUP = 100


def cpu_per_sample(n: int) -> list[dict]:
    from traindash.producer.system import SystemSampler

    sampler = SystemSampler()
    try:
        for _ in range(5):
            sampler.sample()
        costs = []
        for _ in range(n):
            t0 = time.thread_time()
            rows = sampler.sample()
            costs.append((time.thread_time() - t0) * 1e6)
            time.sleep(0.002)  # cold-ish caches, as every 10 s
        gpus = len(rows) - 1
    finally:
        sampler.close()
    costs.sort()
    what = f"SystemSampler.sample(), process + host + {gpus} GPU{'s' if gpus != 1 else ''}"
    note = f"{n} samples, thread CPU clock; NVML {'on' if gpus else 'absent or no GPU'}"
    p50 = median(costs)
    return [
        row(BENCH, what, "CPU per sample p50", p50, "us", note),
        row(BENCH, what, "CPU per sample p90", percentile(costs, 90), "us", note),
        row(
            BENCH,
            what,
            "sampler CPU at the default interval",
            p50 / (DEFAULT * 1e6) * 100,
            "%",
            f"of one core, one sample every {DEFAULT:g} s",
        ),
    ]


def overhead(
    work_name: str, work: Callable[[], None], rounds: int, episodes: int, collector: object, tmp: Path
) -> list[dict]:
    from traindash.producer import MetricsLogger

    logger = MetricsLogger(
        "bench-system",
        output_dir=str(tmp / "logs"),
        config=collector.producer_config(),  # type: ignore[attr-defined]
        system_metrics_interval=0,
    )
    sender = logger._sender
    sender_cpu = _sender_clock(logger)
    assert sender_cpu is not None, "needs the sender thread's CPU clock (Linux)"
    configs = {on: replace(sender.config, system_interval=FAST if on else 0.0) for on in (True, False)}
    sql = f"SELECT count(*) FROM system WHERE run_id = '{logger.run_id}' AND gpu_index IS NULL"
    pct: list[float] = []
    cpu_ms: list[float] = []
    taken = 0
    try:
        block(WARMUP, work, logger, False)
        logger.flush(timeout=30)
        for r in range(rounds):
            wall: dict[bool, float] = {}
            cpu: dict[bool, float] = {}
            n = 0
            for on in (True, False) if r % 2 == 0 else (False, True):
                # Switched on the one live logger (the sender reads it on every wake-up),
                # so no block pays for a logger's start-up; off again for the flush.
                before = collector.scalar(sql)  # type: ignore[attr-defined]
                c0 = sender_cpu()
                sender.config = configs[on]  # type: ignore[union-attr]
                wall[on], _ = block(episodes, work, logger, False)
                sender.config = configs[False]  # type: ignore[union-attr]
                logger.flush(timeout=30)
                cpu[on] = sender_cpu() - c0
                if on:
                    n = collector.scalar(sql) - before  # type: ignore[attr-defined]
            taken += n
            pct.append((wall[True] - wall[False]) / wall[False] * 100)
            cpu_ms.append((cpu[True] - cpu[False]) / max(n, 1) * 1e3)
    finally:
        logger.close()
    tool = f"traindash (thread sender), {work_name}, log_episode"
    per_sample = median(cpu_ms)
    ordered = sorted(pct)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return [
        row(
            BENCH,
            tool,
            "sender CPU per sample",
            per_sample,
            "ms",
            f"the sender thread's CPU clock, block with sampling every {FAST:g} s minus block "
            f"without, per sample ({taken / rounds:.0f} a block): the sample and packing its rows; "
            f"the GIL is held for about this long",
        ),
        row(
            BENCH,
            tool,
            "training overhead bound at the default 10 s",
            per_sample / (DEFAULT * 1e3) * 100,
            "%",
            f"the row above once every {DEFAULT:g} s: at most what a trainer that never releases "
            "the GIL loses; the guide promises < 1% for all of logging",
        ),
        row(
            BENCH,
            tool,
            f"wall-time overhead, sampling every {FAST:g} s",
            median(pct),
            "%",
            f"median of {rounds} alternating rounds x {episodes:,} episodes, middle half "
            f"{q1:+.2f}% .. {q3:+.2f}% (this shared machine's noise)",
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    """Both measurements; rows in the bench/run.py contract."""
    from tests.harness import CollectorProcess, free_endpoints

    rows = cpu_per_sample(100 if quick else 400)
    rounds, episodes = (4, 300) if quick else (8, 500)
    with tempfile.TemporaryDirectory(prefix="bench-system-") as tmp_name:
        tmp = Path(tmp_name)
        collector = CollectorProcess(
            db=tmp / "bench.duckdb", endpoints=free_endpoints(), log_path=tmp / "collector.log"
        )
        try:
            collector.start()
            block(200, busy_wait, None)
            rows += overhead("busy-wait 1 ms", busy_wait, rounds, episodes, collector, tmp)
            rows += overhead("fixed CPU work ~1 ms", calibrated_work(), rounds, episodes, collector, tmp)
            collector.stop()
        finally:
            collector.kill()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    print_table("System-metrics sampler cost", run(quick=args.quick))


if __name__ == "__main__":
    main()

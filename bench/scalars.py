"""Per-call cost of ``log()`` of 8 named scalars: traindash against wandb's and trackio's ``log``.

    .venv/bin/python bench/scalars.py [--quick]

Each tool runs in a child process of its own (see bench/peers.py, whose offline setup this
reuses): traindash ``MetricsLogger.log`` with a real collector receiving (thread and process
senders), ``log_episode`` of the same 8 values for comparison, wandb ``run.log`` (offline)
and trackio ``log`` (local). Names are TensorBoard-style (``losses/value_loss``); ``step``
is given. p50 and p99 per call after a warm-up; a missing peer is reported, never fatal.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import call_stats, emit_result, print_table, row, run_child  # noqa: E402
from peers import OFFLINE_ENV  # noqa: E402

BENCH = "scalars"
TRAINDASH = "traindash log"

#: Display name -> child key, in run order.
TOOLS: dict[str, str] = {
    TRAINDASH: "traindash",
    "traindash log, process sender": "traindash_process",
    "traindash log_episode (same 8 values)": "traindash_episode",
    "wandb offline run.log": "wandb",
    "trackio log": "trackio",
}

NAMES = (
    "losses/value_loss",
    "losses/policy_loss",
    "losses/entropy",
    "losses/approx_kl",
    "losses/clipfrac",
    "charts/learning_rate",
    "charts/episodic_return",
    "charts/sps",
)


# One dict, built once: the figure is the log call's cost, not the cost of making a dict.
PAYLOAD = {name: 0.001 + k for k, name in enumerate(NAMES)}


def _payload(i: int) -> dict[str, float]:
    return PAYLOAD


def _setup(tool: str, workdir: Path) -> tuple[Callable[[int], Any], Callable[[], dict], str]:
    """Open ``tool``; return (log one call, close -> extra result fields, version)."""
    if tool.startswith("traindash"):
        from tests.harness import CollectorProcess, free_endpoints
        from traindash.producer import MetricsLogger

        collector = CollectorProcess(
            db=workdir / "bench.duckdb", endpoints=free_endpoints(), log_path=workdir / "collector.log"
        ).start()
        atexit.register(collector.kill)
        try:
            logger = MetricsLogger(
                "bench-scalars",
                output_dir=str(workdir / "logs"),
                config=collector.producer_config(),
                sender="process" if tool == "traindash_process" else "thread",
            )
        except BaseException:
            collector.kill()
            raise
        table = "episodes" if tool == "traindash_episode" else "scalars"

        def close() -> dict:
            try:
                ok = logger.flush(timeout=120)
                logger.close()
                return {"acked": ok, "rows_committed": collector.scalar(f"SELECT count(*) FROM {table}")}
            finally:
                collector.stop()

        if tool == "traindash_episode":
            ep = logger.log_episode
            return (lambda i: ep(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)), close, "traindash (this tree)"
        log = logger.log
        return (lambda i: log(_payload(i), step=i)), close, "traindash (this tree)"

    if tool == "wandb":
        import wandb

        run = wandb.init(
            project="bench-scalars",
            mode="offline",
            dir=str(workdir),
            settings=wandb.Settings(console="off", x_disable_stats=True, save_code=False),
        )
        log_w = run.log

        def close_wandb() -> dict:
            run.finish()
            return {}

        return (lambda i: log_w(_payload(i), step=i)), close_wandb, "wandb " + wandb.__version__

    if tool == "trackio":
        import trackio

        trackio.init(project="bench-scalars", name="scalars", auto_log_cpu=False, auto_log_gpu=False)
        log_t = trackio.log

        def close_trackio() -> dict:
            trackio.finish()
            return {}

        return (lambda i: log_t(_payload(i), step=i)), close_trackio, "trackio " + trackio.__version__

    raise ValueError(f"unknown tool {tool!r}")


def child(tool: str, calls: int, warmup: int, budget: float, workdir: Path, close_timeout: float) -> None:
    """Measure one tool in this process and print its marked JSON result."""
    log, close, version = _setup(tool, workdir)
    stats = call_stats(log, calls, warmup, budget_s=budget)
    closed: dict[str, Any] = {}
    t0 = time.perf_counter()
    closer = threading.Thread(target=lambda: closed.update(close()), daemon=True)
    closer.start()
    closer.join(close_timeout)
    close_s = None if closer.is_alive() else time.perf_counter() - t0
    stats.update(closed, close_s=close_s, version=version)
    emit_result(stats)
    sys.stderr.flush()
    os._exit(0)


def _measure(
    tool: str, calls: int, warmup: int, budget: float, close_timeout: float
) -> tuple[dict | None, str]:
    with tempfile.TemporaryDirectory(prefix=f"bench-scalars-{tool}-") as tmp:
        env = dict(
            OFFLINE_ENV,
            WANDB_DIR=tmp,
            WANDB_CONFIG_DIR=f"{tmp}/wandb-config",
            WANDB_CACHE_DIR=f"{tmp}/wandb-cache",
            WANDB_DATA_DIR=f"{tmp}/wandb-data",
            TRACKIO_DIR=f"{tmp}/trackio",
            HF_HOME=f"{tmp}/hf",
        )
        args = [
            str(Path(__file__).resolve()),
            "--child",
            tool,
            "--calls",
            str(calls),
            "--warmup",
            str(warmup),
        ]
        args += ["--budget", str(budget), "--workdir", tmp, "--close-timeout", str(close_timeout)]
        return run_child(args, timeout=budget * 1.25 + close_timeout + 120, env=env)


def run(quick: bool = False) -> list[dict]:
    """Measure every tool, each in its own process; rows in the bench/run.py contract."""
    calls, warmup, budget = (2_000, 300, 2.0) if quick else (20_000, 2_000, 15.0)
    close_timeout = 5.0 if quick else 30.0
    results = {}
    for name, key in TOOLS.items():
        print(f"  scalars: {name} ...", file=sys.stderr, flush=True)
        results[name] = _measure(key, calls, warmup, budget, close_timeout)
    rows: list[dict] = []
    base = results[TRAINDASH][0]
    for name, (res, why) in results.items():
        if res is None:
            note = f"could not run: {why}"
            rows += [row(BENCH, name, "p50", None, "us", note), row(BENCH, name, "p99", None, "us", note)]
            continue
        note = f"{res['version']}, {res['calls']:,} timed calls"
        if "rows_committed" in res:
            note += f"; collector committed {res['rows_committed']:,} rows, acked={res['acked']}"
        rows.append(row(BENCH, name, "p50", res["p50_us"], "us", note))
        rows.append(row(BENCH, name, "p99", res["p99_us"], "us", note))
        if name != TRAINDASH and base:
            rows.append(
                row(BENCH, name, "p50 / traindash log p50", res["p50_us"] / base["p50_us"], "x", "same run")
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke check")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=20_000, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=2_000, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=15.0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--close-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.chdir(args.workdir)
        child(args.child, args.calls, args.warmup, args.budget, Path(args.workdir), args.close_timeout)
        return
    print_table("Per-call cost of log() of 8 named scalars", run(quick=args.quick))


if __name__ == "__main__":
    main()

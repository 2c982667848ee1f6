"""Per-call cost of logging one episode of 8 scalars: traindash against the tools users would pick.

    .venv/bin/python bench/peers.py [--quick]

Each tool runs in a child process of its own (fresh imports, its own background threads and
temporary directory): traindash ``log_episode`` with a real collector subprocess receiving,
a bare function appending the same arguments to a ``deque`` (the floor), tensorboardX
``add_scalar`` x8 and ``add_scalars``, MLflow ``log_metrics`` (synchronous and
``synchronous=False``, local file store), wandb in offline mode, and trackio (local SQLite).
Every call is timed with ``perf_counter_ns`` after a warm-up; p50 and p99 are reported, and
each peer's p50 as a multiple of traindash's. The peers come from the ``bench`` extra
(``pip install -e '.[bench]'``); one that is missing or cannot run offline is reported with
``value`` None and the reason, never failing the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, call_stats, emit_result, print_table, row, run_child  # noqa: E402

BENCH = "log_call_peers"
TRAINDASH = "traindash log_episode"

#: Display name -> child key, in run order.
TOOLS: dict[str, str] = {
    "bare deque.append (floor)": "deque",
    TRAINDASH: "traindash",
    "tensorboardX add_scalar x8": "tbx_scalar",
    "tensorboardX add_scalars": "tbx_scalars",
    "MLflow log_metrics sync, file store": "mlflow_sync",
    "MLflow log_metrics synchronous=False, file store": "mlflow_async",
    "MLflow log_metrics sync, sqlite": "mlflow_sync_sqlite",
    "MLflow log_metrics synchronous=False, sqlite": "mlflow_async_sqlite",
    "wandb offline run.log": "wandb",
    "trackio log": "trackio",
}

#: Variables that keep every peer local, quiet and out of the user's home directory.
OFFLINE_ENV = {
    "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off",
    "WANDB_DISABLE_GIT": "true", "WANDB_DISABLE_CODE": "true", "WANDB_ANONYMOUS": "never",
    "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "TQDM_DISABLE": "1",
    "MLFLOW_ALLOW_FILE_STORE": "true",
}


def _payload(i: int) -> dict[str, float]:
    return {"episode": i, "profit": 1.5, "sharpe": 0.5, "win_rate": 0.6, "drawdown": 10.0,
            "num_trades": 7, "epsilon": 0.1, "learning_rate": 0.001}


# -- child side: one tool per process ------------------------------------------------------
def _setup(tool: str, workdir: Path) -> tuple[Callable[[int], Any], Callable[[], dict], str]:
    """Open ``tool``; return (log one episode, close -> extra result fields, version)."""
    if tool == "deque":
        q: deque = deque()

        def bare(episode: int, profit: float, sharpe: float = 0.0, win_rate: float = 0.0,
                 drawdown: float = 0.0, num_trades: int = 0, epsilon: float = 0.0,
                 learning_rate: float = 0.0, **kwargs: Any) -> None:
            q.append((episode, profit, sharpe, win_rate, drawdown, num_trades, epsilon,
                      learning_rate, kwargs))

        return (lambda i: bare(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)), dict, sys.version.split()[0]

    if tool == "traindash":
        from producer import MetricsLogger
        from tests.harness import CollectorProcess, free_endpoints

        collector = CollectorProcess(db=workdir / "bench.duckdb", endpoints=free_endpoints(),
                                     log_path=workdir / "collector.log").start()
        try:
            logger = MetricsLogger("bench-peers", output_dir=str(workdir / "logs"),
                                   config=collector.producer_config())
        except BaseException:
            collector.kill()
            raise
        log = logger.log_episode

        def close() -> dict:
            try:
                ok = logger.flush(timeout=120)
                logger.close()
                rows = collector.scalar("SELECT count(*) FROM episodes")
                return {"acked": ok, "rows_committed": rows}
            finally:
                collector.stop()

        return (lambda i: log(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)), close, "this repo"

    if tool in ("tbx_scalar", "tbx_scalars"):
        import tensorboardX
        from tensorboardX import SummaryWriter

        w = SummaryWriter(logdir=str(workdir / "tb"))
        add = w.add_scalar
        if tool == "tbx_scalar":
            def log_tb(i: int) -> None:
                add("episode", i, i)
                add("profit", 1.5, i)
                add("sharpe", 0.5, i)
                add("win_rate", 0.6, i)
                add("drawdown", 10.0, i)
                add("num_trades", 7, i)
                add("epsilon", 0.1, i)
                add("learning_rate", 0.001, i)
        else:
            def log_tb(i: int) -> None:
                w.add_scalars("episode", _payload(i), i)

        def close_tb() -> dict:
            w.close()
            return {}

        return log_tb, close_tb, tensorboardX.__version__

    if tool.startswith("mlflow_"):
        import mlflow

        if tool.endswith("_sqlite"):  # MLflow 3's default local backend
            mlflow.set_tracking_uri(f"sqlite:///{workdir / 'mlflow.db'}")
        else:  # the file store MLflow 3 keeps behind MLFLOW_ALLOW_FILE_STORE
            mlflow.set_tracking_uri((workdir / "mlruns").as_uri())
        mlflow.set_experiment("bench-peers")
        mlflow.start_run()
        sync = tool.startswith("mlflow_sync")
        log_metrics = mlflow.log_metrics

        def close_mlflow() -> dict:
            mlflow.end_run()  # waits for the async queue to drain
            return {}

        return (lambda i: log_metrics(_payload(i), step=i, synchronous=sync)), close_mlflow, \
            mlflow.__version__

    if tool == "wandb":
        import wandb

        run = wandb.init(project="bench-peers", mode="offline", dir=str(workdir),
                         settings=wandb.Settings(console="off", x_disable_stats=True,
                                                 save_code=False))
        log_w = run.log

        def close_wandb() -> dict:
            run.finish()
            return {}

        return (lambda i: log_w(_payload(i), step=i)), close_wandb, wandb.__version__

    if tool == "trackio":
        import trackio

        trackio.init(project="bench-peers", name="peers", auto_log_cpu=False, auto_log_gpu=False)
        log_t = trackio.log

        def close_trackio() -> dict:
            trackio.finish()
            return {}

        return (lambda i: log_t(_payload(i), step=i)), close_trackio, trackio.__version__

    raise ValueError(f"unknown tool {tool!r}")


def child(tool: str, calls: int, warmup: int, budget: float, workdir: Path) -> None:
    """Measure one tool in this process and print its marked JSON result."""
    t0 = time.perf_counter()
    log, close, version = _setup(tool, workdir)
    setup_s = time.perf_counter() - t0
    stats = call_stats(log, calls, warmup, budget_s=budget)
    t0 = time.perf_counter()
    extra = close()
    stats.update(extra, setup_s=setup_s, close_s=time.perf_counter() - t0, version=version)
    emit_result(stats)


# -- parent side ---------------------------------------------------------------------------
def _measure(tool: str, calls: int, warmup: int, budget: float) -> tuple[dict | None, str]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as tmp:
        env = dict(OFFLINE_ENV, WANDB_DIR=tmp, WANDB_CONFIG_DIR=f"{tmp}/wandb-config",
                   WANDB_CACHE_DIR=f"{tmp}/wandb-cache", WANDB_DATA_DIR=f"{tmp}/wandb-data",
                   TRACKIO_DIR=f"{tmp}/trackio", HF_HOME=f"{tmp}/hf",
                   )
        args = [str(Path(__file__).resolve()), "--child", tool, "--calls", str(calls),
                "--warmup", str(warmup), "--budget", str(budget), "--workdir", tmp]
        # Setup (imports, a collector, wandb's service) plus draining a peer's queue at the end.
        return run_child(args, timeout=budget * 1.5 + 180, env=env)


def run(quick: bool = False) -> list[dict]:
    """Measure every tool, each in its own process; rows in the bench/run.py contract."""
    calls, warmup, budget = (5_000, 1_000, 5.0) if quick else (50_000, 5_000, 60.0)
    results: dict[str, tuple[dict | None, str]] = {}
    for name, key in TOOLS.items():
        print(f"  peers: {name} ...", file=sys.stderr, flush=True)
        results[name] = _measure(key, calls, warmup, budget)
    rows: list[dict] = []
    base = results[TRAINDASH][0]
    for name, (res, why) in results.items():
        if res is None:
            note = f"could not run: {why}"
            rows += [row(BENCH, name, "p50", None, "us", note), row(BENCH, name, "p99", None, "us", note)]
            continue
        note = f"v{res['version']}, {res['calls']:,} timed calls after {warmup:,} warm-up"
        if res["calls"] < calls:
            note += f" (stopped at the {budget:g} s budget)"
        if "rows_committed" in res:
            note += f"; collector committed {res['rows_committed']:,} rows, acked={res['acked']}"
        note += f"; close {res['close_s']:.2f} s"
        rows.append(row(BENCH, name, "p50", res["p50_us"], "us", note))
        rows.append(row(BENCH, name, "p99", res["p99_us"], "us", note))
    for name, (res, _) in results.items():
        if name == TRAINDASH:
            continue
        ratio = res["p50_us"] / base["p50_us"] if res and base else None
        rows.append(row(BENCH, name, "p50 / traindash p50", ratio, "x",
                        "same run, separate processes; >1 means traindash is cheaper"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke check")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=50_000, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=5_000, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.chdir(args.workdir)  # anything a peer writes to its cwd lands in the temp dir
        child(args.child, args.calls, args.warmup, args.budget, Path(args.workdir))
        return
    rows = run(quick=args.quick)
    print_table("Per-call cost of logging one episode of 8 scalars", rows)


if __name__ == "__main__":
    main()

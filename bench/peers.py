"""Per-call cost of logging one episode of 8 scalars: traindash against the tools users would pick.

    .venv/bin/python bench/peers.py [--quick]

Each tool runs in a child process of its own (fresh imports, its own background threads and
temporary directory): traindash ``log_episode`` with a real collector subprocess receiving,
a bare function appending the same arguments to a ``deque`` (the floor), tensorboardX
``add_scalar`` x8 and ``add_scalars``, MLflow ``log_metrics`` (synchronous and
``synchronous=False``; the local file store, which MLflow 3 keeps behind
``MLFLOW_ALLOW_FILE_STORE``, and its default local SQLite backend), wandb in offline mode,
and trackio (local SQLite).
Every call is timed with ``perf_counter_ns`` after a warm-up; p50 and p99 are reported, and
each peer's p50 as a multiple of traindash's. The peers come from the ``bench`` extra
(``pip install -e '.[bench]'``); one that is missing or cannot run offline is reported with
``value`` None and the reason, never failing the run.
"""

from __future__ import annotations

import argparse
import atexit
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import call_stats, emit_result, print_table, row, run_child  # noqa: E402

BENCH = "peers"
TRAINDASH = "traindash log_episode"
TRAINDASH_PROCESS = "traindash log_episode, process sender"

#: Display name -> child key, in run order.
TOOLS: dict[str, str] = {
    "bare deque.append (floor)": "deque",
    TRAINDASH: "traindash",
    TRAINDASH_PROCESS: "traindash_process",
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
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_CONSOLE": "off",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_ANONYMOUS": "never",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "TQDM_DISABLE": "1",
    "MLFLOW_ALLOW_FILE_STORE": "true",
}


def _payload(i: int) -> dict[str, float]:
    return {
        "episode": i,
        "profit": 1.5,
        "sharpe": 0.5,
        "win_rate": 0.6,
        "drawdown": 10.0,
        "num_trades": 7,
        "epsilon": 0.1,
        "learning_rate": 0.001,
    }


# -- child side: one tool per process ------------------------------------------------------
def _setup(tool: str, workdir: Path) -> tuple[Callable[[int], Any], Callable[[], dict], str]:
    """Open ``tool``; return (log one episode, close -> extra result fields, version)."""
    if tool == "deque":
        q: deque = deque()

        def bare(
            episode: int,
            profit: float,
            sharpe: float = 0.0,
            win_rate: float = 0.0,
            drawdown: float = 0.0,
            num_trades: int = 0,
            epsilon: float = 0.0,
            learning_rate: float = 0.0,
            **kwargs: Any,
        ) -> None:
            q.append(
                (episode, profit, sharpe, win_rate, drawdown, num_trades, epsilon, learning_rate, kwargs)
            )

        version = "python " + sys.version.split()[0]
        return (lambda i: bare(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)), dict, version

    if tool in ("traindash", "traindash_process"):
        from tests.harness import CollectorProcess, free_endpoints
        from traindash.producer import MetricsLogger

        collector = CollectorProcess(
            db=workdir / "bench.duckdb", endpoints=free_endpoints(), log_path=workdir / "collector.log"
        ).start()
        atexit.register(collector.kill)  # on an error; the parent kills the group on a timeout
        try:
            logger = MetricsLogger(
                "bench-peers",
                output_dir=str(workdir / "logs"),
                config=collector.producer_config(),
                sender="process" if tool == "traindash_process" else "thread",
            )
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

        return (lambda i: log(i, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)), close, "traindash (this tree)"

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

        return log_tb, close_tb, "tensorboardX " + tensorboardX.__version__

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
            # Runs in a helper thread, where MLflow's active run (thread-local) is not set:
            # wait for the async queue explicitly.
            mlflow.flush_async_logging()
            return {}

        return (
            (lambda i: log_metrics(_payload(i), step=i, synchronous=sync)),
            close_mlflow,
            "mlflow " + mlflow.__version__,
        )

    if tool == "wandb":
        import wandb

        run = wandb.init(
            project="bench-peers",
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

        trackio.init(project="bench-peers", name="peers", auto_log_cpu=False, auto_log_gpu=False)
        log_t = trackio.log

        def close_trackio() -> dict:
            trackio.finish()
            return {}

        return (lambda i: log_t(_payload(i), step=i)), close_trackio, "trackio " + trackio.__version__

    raise ValueError(f"unknown tool {tool!r}")


def _progress(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def child(tool: str, calls: int, warmup: int, budget: float, workdir: Path, close_timeout: float) -> None:
    """Measure one tool in this process and print its marked JSON result."""
    t0 = time.perf_counter()
    log, close, version = _setup(tool, workdir)
    setup_s = time.perf_counter() - t0
    _progress(f"{tool}: set up in {setup_s:.1f} s")
    stats = call_stats(log, calls, warmup, budget_s=budget)
    _progress(f"{tool}: {stats['calls']} calls timed in {stats['wall_s']:.1f} s")
    # Closing drains a tool's queue (MLflow's async queue can take minutes): bounded here.
    closed: dict[str, Any] = {}
    t0 = time.perf_counter()
    closer = threading.Thread(target=lambda: closed.update(close()), daemon=True)
    closer.start()
    closer.join(close_timeout)
    close_s = None if closer.is_alive() else time.perf_counter() - t0
    _progress(f"{tool}: closed" if close_s is not None else f"{tool}: close abandoned")
    stats.update(closed, setup_s=setup_s, close_s=close_s, version=version)
    emit_result(stats)
    sys.stderr.flush()
    # Skip the tools' exit hooks: MLflow's drains its async queue there, for minutes.
    os._exit(0)


# -- parent side ---------------------------------------------------------------------------
def _measure(
    tool: str, calls: int, warmup: int, budget: float, close_timeout: float
) -> tuple[dict | None, str]:
    with tempfile.TemporaryDirectory(prefix=f"bench-{tool}-") as tmp:
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
            "--budget",
            str(budget),
            "--workdir",
            tmp,
            "--close-timeout",
            str(close_timeout),
        ]
        # Setup (imports, a collector, wandb's service) and the bounded close come on top.
        return run_child(args, timeout=budget * 1.25 + close_timeout + 120, env=env)


def run(quick: bool = False) -> list[dict]:
    """Measure every tool, each in its own process; rows in the bench/run.py contract."""
    calls, warmup, budget = (2_000, 300, 2.0) if quick else (50_000, 2_000, 30.0)
    close_timeout = 5.0 if quick else 30.0
    results: dict[str, tuple[dict | None, str]] = {}
    for name, key in TOOLS.items():
        print(f"  peers: {name} ...", file=sys.stderr, flush=True)
        results[name] = _measure(key, calls, warmup, budget, close_timeout)
    rows: list[dict] = []
    base = results[TRAINDASH][0]
    for name, (res, why) in results.items():
        if res is None:
            note = f"could not run: {why}"
            rows += [row(BENCH, name, "p50", None, "us", note), row(BENCH, name, "p99", None, "us", note)]
            continue
        note = f"{res['version']}, {res['calls']:,} timed calls after {warmup:,} warm-up"
        if res["calls"] < calls:
            note += f" (stopped at the {budget:g} s budget)"
        if "rows_committed" in res:
            note += f"; collector committed {res['rows_committed']:,} rows, acked={res['acked']}"
        if res["close_s"] is None:
            note += f"; close() still draining after {close_timeout:g} s (abandoned)"
        else:
            note += f"; close {res['close_s']:.2f} s"
        rows.append(row(BENCH, name, "p50", res["p50_us"], "us", note))
        rows.append(row(BENCH, name, "p99", res["p99_us"], "us", note))
    peers = [
        (n, r) for n, (r, _) in results.items() if r and not n.startswith("traindash") and "floor" not in n
    ]
    if peers:
        name, fastest = min(peers, key=lambda p: p[1]["p50_us"])
        for ours, label in ((TRAINDASH, "traindash"), (TRAINDASH_PROCESS, "traindash process")):
            res = results[ours][0]
            if res:
                rows.append(
                    row(
                        BENCH,
                        f"fastest peer / {label}",
                        "p50 ratio",
                        fastest["p50_us"] / res["p50_us"],
                        "x",
                        f"fastest peer: {name}; issue 7 target: at least 15x",
                    )
                )
    for name, (res, _) in results.items():
        if name == TRAINDASH:
            continue
        ratio = res["p50_us"] / base["p50_us"] if res and base else None
        rows.append(
            row(
                BENCH,
                name,
                "p50 / traindash p50",
                ratio,
                "x",
                "same run, separate processes; >1 means traindash is cheaper",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, for a smoke check")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--calls", type=int, default=50_000, help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=int, default=5_000, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=60.0, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--close-timeout", type=float, default=30.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        os.chdir(args.workdir)  # anything a peer writes to its cwd lands in the temp dir
        child(args.child, args.calls, args.warmup, args.budget, Path(args.workdir), args.close_timeout)
        return
    rows = run(quick=args.quick)
    print_table("Per-call cost of logging one episode of 8 scalars", rows)


if __name__ == "__main__":
    main()

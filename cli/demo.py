"""``traindash demo``: simulated RL trading trainers, each its own process."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time

from traindash.config import interval

HELP = "start simulated RL trading trainers (separate processes) that log to the collector"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trainers", type=int, default=3, metavar="N", help="number of trainer processes (default 3)"
    )
    p.add_argument(
        "--episodes",
        type=int,
        default=0,
        metavar="N",
        help="episodes per trainer; 0 runs until interrupted (default 0)",
    )
    p.add_argument(
        "--interval", type=float, default=0.2, metavar="S", help="seconds between episodes (default 0.2)"
    )
    p.add_argument("--experiment", default="demo", help="experiment name (default demo)")
    p.add_argument(
        "--system-interval",
        type=interval,
        metavar="S",
        help="seconds between CPU/memory/GPU samples of each trainer; 0 or off: none "
        "(default 10; env TRAINDASH_SYSTEM_INTERVAL)",
    )
    p.add_argument("--index", type=int, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    if args.trainers < 1 or args.episodes < 0 or args.interval < 0:
        raise ValueError("--trainers must be >= 1, --episodes and --interval >= 0")
    if args.index is not None:
        from traindash.cli.demo_trainer import run_trainer

        run_id = run_trainer(
            args.index, args.episodes, args.interval, args.experiment, system_interval=args.system_interval
        )
        print(f"trainer {args.index}: run {run_id} done", flush=True)
        return 0
    base = [
        sys.executable,
        "-m",
        "traindash.cli",
        "demo",
        "--episodes",
        str(args.episodes),
        "--interval",
        str(args.interval),
        "--experiment",
        args.experiment,
    ]
    if args.system_interval is not None:
        base += ["--system-interval", str(args.system_interval)]
    procs = [subprocess.Popen(base + ["--index", str(i)]) for i in range(args.trainers)]
    print(f"started {args.trainers} demo trainers (experiment {args.experiment!r})", flush=True)

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = []
    for proc in procs:
        while proc.poll() is None:
            time.sleep(0.1)
        codes.append(proc.returncode)
    return 0 if all(c == 0 for c in codes) else 1

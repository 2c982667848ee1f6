"""1,000 streams into one collector: a Ray-sized fleet writing a few runs at once.

    .venv/bin/python bench/fanin_streams.py [--quick] [--processes P] [--streams L] [--rate R] [--seconds D]

P processes (10 by default) each open L MetricsLogger streams (100), spread over 4 runs (a
run has many writers, as an RLlib job's EnvRunners are), and every stream logs an episode R
times a second (2) for D seconds (20), then closes. A SUB socket on the collector's rows
endpoint takes each published row's arrival as its commit time, so log -> commit is measured
per row (``ts`` is stamped at the log call), over all rows and in the steady state: from 5 s
after the last process began logging until the first close (ten processes importing and
opening a hundred streams each, or closing them all at once, share this machine's two
cores). rows/s = rows committed / (first log call -> last close). Exactly-once is checked
with SQL: every (run, stream, seq) once, and the row count equal to what the streams logged.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, percentile, print_table, row, rows_arrived  # noqa: E402

sys.path.insert(0, str(ROOT))
BENCH = "fanin_streams"
RUNS = 4
STARTUP_S = 5.0


def _writer(
    k: int, streams: int, rate: float, seconds: float, flush: float, endpoints: Any, out: str, q: Any
) -> None:
    from traindash.config import ProducerConfig
    from traindash.producer import MetricsLogger

    cfg = ProducerConfig(endpoints=endpoints, flush_interval=flush)
    loggers = [
        MetricsLogger(
            "fanin",
            output_dir=f"{out}/{k}",
            run_id=f"fanin-run-{j % RUNS}",
            stream=f"p{k}-s{j}",
            config=cfg,
            objective="episode_return",
        )
        for j in range(streams)
    ]
    t0 = time.time()
    n, due = 0, t0
    while time.time() - t0 < seconds:
        for lg in loggers:
            lg.log_episode(n, episode_return=float(n), episode_length=100)
        n += 1
        due += 1.0 / rate
        time.sleep(max(0.0, due - time.time()))

    def close(lg: MetricsLogger) -> float:
        c0 = time.time()
        lg.close(timeout=60)
        return time.time() - c0

    # All at once, as the processes of a fleet end: each close waits for its own last ack.
    with ThreadPoolExecutor(len(loggers)) as pool:
        closes = list(pool.map(close, loggers))
    q.put((k, n * streams, t0, time.time(), max(closes), sum(lg._sender.pending for lg in loggers)))


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a live process (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def measure(processes: int, streams: int, rate: float, seconds: float, flush: float = 0.1) -> dict[str, Any]:
    import numpy as np
    import zmq

    from tests.harness import CollectorProcess, free_endpoints
    from traindash import wire

    tmp = Path(tempfile.mkdtemp(prefix="td-fanin-"))
    c = CollectorProcess(db=tmp / "fanin.duckdb", endpoints=free_endpoints(), log_path=tmp / "collector.log")
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    lat: list[np.ndarray] = []
    logged: list[np.ndarray] = []
    stop = threading.Event()

    def listen() -> None:
        while not stop.is_set():
            if (got := rows_arrived(sub, 200)) is not None:
                lat.append(got[0])
                logged.append(got[1])

    procs: list[Any] = []
    try:
        c.start()
        sub.connect(c.endpoints.rows)
        sub.setsockopt(zmq.SUBSCRIBE, wire.rows_topic(wire.RecordKind.EPISODE))
        listener = threading.Thread(target=listen, daemon=True)
        listener.start()
        time.sleep(0.3)
        q: Any = mp.get_context("fork").Queue()
        procs = [
            mp.get_context("fork").Process(
                target=_writer, args=(k, streams, rate, seconds, flush, c.endpoints, str(tmp), q)
            )
            for k in range(processes)
        ]
        for p in procs:
            p.start()
        results = [q.get(timeout=seconds + 150) for _ in procs]
        for p in procs:
            p.join(30)
        stop.set()
        listener.join(5)
        got = c.query(
            "SELECT count(*) AS n, count(DISTINCT (run_id, stream, seq)) AS d, "
            "count(DISTINCT run_id) AS runs, count(DISTINCT stream) AS streams FROM episodes"
        ).to_pylist()[0]
        live = c.scalar("SELECT count(*) FROM streams WHERE status = 'finished'")
        collector_cpu = _cpu_seconds(c.proc.pid) if c.proc else None
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
        sub.close(0)
        ctx.term()
        c.kill()
    expected = sum(r[1] for r in results)
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    all_lat = np.concatenate(lat) * 1000 if lat else np.empty(0)
    # Steady state: rows logged from STARTUP_S seconds after the last process began logging
    # (ten processes importing and opening a hundred streams each share two cores) until the
    # first began closing (a thousand streams closing at once).
    at = np.concatenate(logged) if logged else np.empty(0)
    first_close = min(r[2] for r in results) + seconds
    window = (at >= max(r[2] for r in results) + STARTUP_S) & (at < first_close)
    steady = all_lat[window]
    all_lat, steady = np.sort(all_lat), np.sort(steady)
    return {
        "streams": processes * streams,
        "expected": expected,
        "stored": got["n"],
        "distinct": got["d"],
        "runs": got["runs"],
        "stream_count": got["streams"],
        "finished_streams": live,
        "rows_per_s": got["n"] / wall,
        "p50": percentile(all_lat.tolist(), 50) if len(all_lat) else None,
        "p99": percentile(all_lat.tolist(), 99) if len(all_lat) else None,
        "steady_p99": percentile(steady.tolist(), 99) if len(steady) else None,
        "steady_rows": len(steady),
        "close_max": max(r[4] for r in results),
        "unacked": sum(r[5] for r in results),
        "collector_cpu": collector_cpu,
        "wall": wall,
    }


def run(quick: bool = False, **kw: Any) -> list[dict]:
    args = {"processes": 4, "streams": 25, "rate": 2.0, "seconds": 6.0} if quick else {}
    args.update({k: v for k, v in kw.items() if v is not None})
    m = measure(
        args.get("processes", 10),
        args.get("streams", 100),
        args.get("rate", 2.0),
        args.get("seconds", 20.0),
        args.get("flush", 0.1),
    )
    dups = m["stored"] - m["distinct"]
    if dups == 0 and m["stored"] == m["expected"]:
        verdict = "exactly once"
    elif dups == 0 and m["stored"] + m["unacked"] >= m["expected"]:
        verdict = "no duplicates; the rest unacknowledged at close, kept in spools (not lost)"
    else:
        verdict = "NOT exactly once"
    tool = f"traindash, {m['streams']} streams of {m['runs']} runs, flush {args.get('flush', 0.1):g} s"
    note = (
        f"{verdict}: {m['stored']}/{m['expected']} rows, {dups} duplicates, "
        f"{m['stream_count']} streams seen, {m['finished_streams']} finished"
    )
    return [
        row(BENCH, tool, "rows/s (offered rate)", m["rows_per_s"], "rows/s", note),
        row(BENCH, tool, "log -> commit p50", m["p50"], "ms"),
        row(BENCH, tool, "log -> commit p99", m["p99"], "ms"),
        row(
            BENCH,
            tool,
            "log -> commit p99, steady state",
            m["steady_p99"],
            "ms",
            f"{m['steady_rows']} rows logged from {STARTUP_S:g} s after every process began "
            "until the first close",
        ),
        row(BENCH, tool, "slowest close()", m["close_max"], "s", f"{m['unacked']} records unacknowledged"),
        row(
            BENCH,
            tool,
            "collector CPU",
            m["collector_cpu"],
            "s",
            f"over {m['wall']:.0f} s of logging and closing",
        ),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--processes", type=int)
    ap.add_argument("--streams", type=int, help="streams per process")
    ap.add_argument("--rate", type=float, help="episodes per second per stream")
    ap.add_argument("--seconds", type=float)
    ap.add_argument("--flush", type=float, help="each logger's flush interval (default 0.1 s)")
    a = ap.parse_args()
    rows = run(
        a.quick, processes=a.processes, streams=a.streams, rate=a.rate, seconds=a.seconds, flush=a.flush
    )
    print_table("1,000-stream fan-in", rows)


if __name__ == "__main__":
    main()

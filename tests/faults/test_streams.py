"""Streams of one run: each writer's rows are stored exactly once, even when one is SIGKILLed."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, CollectorProcess, wait_for

pytestmark = pytest.mark.slow

RUN = "fleet-run"
WRITER = """
import os, sys, time
from traindash.producer import MetricsLogger
stream, first, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lg = MetricsLogger("fleet", output_dir=sys.argv[4], run_id=sys.argv[5], stream=stream,
                   worker="env_runner_" + stream[1:], objective="episode_return")
for i in range(first, first + n):
    lg.log_episode(i, episode_return=float(i), episode_length=10, env_index=0)
    time.sleep(0.002)
while not os.path.exists(sys.argv[6]):  # the run stays live until the test has looked
    time.sleep(0.05)
lg.close()
"""


def writer(c: CollectorProcess, tmp: Path, stream: str, first: int, n: int) -> subprocess.Popen:
    env = dict(c.env, TRAINDASH_RESEND_AFTER="0.5", TRAINDASH_CLOSE_TIMEOUT="60")
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, stream, str(first), str(n), str(tmp / stream), RUN, str(tmp / "done")],
        env=env,
        cwd=ROOT,
    )


def test_streams_of_one_run_exactly_once_with_one_sigkilled(
    stopped_collector: CollectorProcess, tmp_path: Path
) -> None:
    c = stopped_collector
    c.extra_env.update(TRAINDASH_STALL_AFTER="1", TRAINDASH_LOST_AFTER="2")
    c.start()
    n = 3000
    procs = {s: writer(c, tmp_path, s, 0, n) for s in ("w0", "w1", "w2")}
    try:
        wait_for(
            lambda: (c.scalar("SELECT count(*) FROM episodes WHERE stream = 'w1'") or 0) > 300,
            60,
            "w1's rows",
        )
        procs["w1"].send_signal(signal.SIGKILL)
        procs.pop("w1").wait(10)
        acked = c.scalar(f"SELECT acked_seq FROM streams WHERE stream_key = '{RUN}#w1'")
        assert acked > 0
        wait_for(
            lambda: c.scalar(f"SELECT status FROM streams WHERE stream_key = '{RUN}#w1'") == "lost",
            30,
            "the killed stream to be lost",
        )
        assert c.scalar(f"SELECT status FROM runs WHERE run_id = '{RUN}'") == "running"
        # Its replacement is a stream of its own, as a restarted Ray actor's is. (Reusing
        # the name after a SIGKILL restarts its seqs at the last saved state: the
        # collector would drop the new rows as duplicates; see docs/ray.md.)
        procs["w3"] = writer(c, tmp_path, "w3", 100_000, 500)
        wait_for(
            lambda: c.scalar("SELECT count(*) FROM episodes WHERE stream = 'w3'") == 500, 60, "w3's rows"
        )
        assert c.scalar(f"SELECT status FROM runs WHERE run_id = '{RUN}'") == "running"
        (tmp_path / "done").touch()
        for s, p in procs.items():
            assert p.wait(120) == 0, s
    finally:
        for p in procs.values():
            p.kill()
    rows = c.query(
        "SELECT stream, count(*) AS n, count(DISTINCT seq) AS d, count(DISTINCT episode) AS e, "
        "count(*) FILTER (WHERE episode >= 100000) AS resumed, any_value(run_id) AS run "
        "FROM episodes GROUP BY stream ORDER BY stream"
    ).to_pylist()
    by = {r["stream"]: r for r in rows}
    assert set(by) == {"w0", "w1", "w2", "w3"}
    for r in by.values():
        assert r["n"] == r["d"] == r["e"], r  # no duplicates
        assert r["run"] == RUN
    assert by["w0"]["n"] == by["w2"]["n"] == n
    assert by["w3"]["n"] == by["w3"]["resumed"] == 500
    # Every episode acknowledged before the kill is there (seq 1 is the run record).
    kept = c.scalar(f"SELECT count(*) FROM episodes WHERE stream = 'w1' AND seq <= {acked}")
    assert kept == acked - 1
    streams = c.query("SELECT stream, status, worker, acked_seq FROM streams ORDER BY stream").to_pylist()
    assert [s["stream"] for s in streams] == ["w0", "w1", "w2", "w3"]
    assert [s["status"] for s in streams] == ["finished", "lost", "finished", "finished"], streams
    assert streams[1]["worker"] == "env_runner_1"
    assert c.scalar(f"SELECT status FROM runs WHERE run_id = '{RUN}'") == "finished"
    assert c.scalar("SELECT count(*) FROM runs") == 1
    assert c.scalar(f"SELECT objective FROM runs WHERE run_id = '{RUN}'") == "episode_return"

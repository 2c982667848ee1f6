"""The query scheduler's fairness and lanes, and the check that refuses oversized values."""

from __future__ import annotations

import duckdb
import pytest

from traindash.collector.querymemory import memory_bound
from traindash.collector.queryqueue import Job, QueueFull, Scheduler
from traindash.collector.queryrun import QueryRefused, check_sql, run_query
from traindash.config import CollectorConfig, ConfigError, parse_size


def job(client: bytes, lane: str = "console", n: int = 0, deadline: float = 100.0) -> Job:
    return Job(client, n, lane, f"q{n}", 10, 0.0, deadline, deadline, True)


def test_one_client_pile_does_not_starve_another() -> None:
    s = Scheduler(workers=3, reserved=1)
    pile = [job(b"A", n=i) for i in range(20)]
    for j in pile:
        s.submit(j)
    b = job(b"B")
    assert s.submit(b) == 1  # only A's first query is ahead of B's
    assert s.next() is pile[0]
    assert s.next() is b  # A runs one at a time; B gets the second console worker
    assert s.next() is None  # the third worker is the service lane's
    svc = job(b"UI", "service")
    s.submit(svc)
    assert s.next() is svc
    s.done(pile[0])
    assert s.next() is pile[1]


def test_round_robin_between_clients() -> None:
    s = Scheduler(workers=2, reserved=0)
    a = [job(b"A", n=i) for i in range(3)]
    b = [job(b"B", n=i) for i in range(3)]
    for j in a + b:
        s.submit(j)
    order = []
    while s.queued:
        started = [s.next(), s.next()]
        order += [j.client for j in started if j]
        for j in started:
            if j:
                s.done(j)
    assert order == [b"A", b"B"] * 3


def test_console_never_takes_the_reserved_workers() -> None:
    s = Scheduler(workers=4, reserved=2)
    for c in (b"1", b"2", b"3", b"4"):
        s.submit(job(c))
    assert [s.next() is not None for _ in range(4)] == [True, True, False, False]
    s.submit(job(b"ui", "service"))
    assert s.next() is not None and s.next() is None


def test_withdraw_expire_and_queue_full() -> None:
    s = Scheduler(workers=2, reserved=1, max_queued_per_client=3)
    running = job(b"A", n=0)
    s.submit(running)
    assert s.next() is running
    queued = [job(b"A", n=i, deadline=5.0 * i) for i in range(1, 4)]
    for j in queued:
        s.submit(j)
    with pytest.raises(QueueFull, match="3 queries from your client"):
        s.submit(job(b"A", n=9))
    assert s.ahead(queued[2]) == 2
    assert s.withdraw(b"A", 2) == [queued[1]]
    assert s.expired(6.0) == [queued[0]]
    assert s.queued == 1 and s.running_of(b"A") == [running]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT repeat('x', 2000000000)",
        "SELECT system.main.repeat('x', 2000000000)",
        "SELECT 'x'.repeat(2000000000)",
        "SELECT repeat('x', (SELECT 2000000000))",
        "SELECT repeat(run_id, 1000000) FROM (SELECT 'r' AS run_id)",
        "SELECT range(300000000)",
        "FROM unnest(generate_series(1, 300000000))",
        "SELECT lpad('x', 1500000000, 'y')",
        "SELECT list_resize([1], 300000000)",
        "SELECT printf('%1500000000s', 'x')",
        "SELECT format('{:>1500000000}', 'x')",
        "SELECT replace(repeat('a', 100), 'a', repeat('b', 100))",
        "SELECT list_transform(range(100), lambda x: repeat('x', 100))",
    ],
)
def test_values_built_in_one_call_are_refused_before_they_run(sql: str) -> None:
    with pytest.raises(QueryRefused) as info:
        check_sql(duckdb.connect(), sql, 64 * 2**20)
    assert info.value.reason == "oversized-value"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM range(100000000000)",
        "SELECT * FROM range(10)",
        "SELECT repeat('-', 40), lpad('7', 5, '0'), range(10), format('{:>10}', 'x')",
        "SELECT repeat(s, 3) FROM (SELECT 'ab' AS s)",
        "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT * FROM t",
    ],
)
def test_ordinary_queries_pass_the_check(sql: str) -> None:
    check_sql(duckdb.connect(), sql, 64 * 2**20)


def test_result_caps_rows_and_bytes() -> None:
    con = duckdb.connect()
    answer = run_query(con, "SELECT * FROM range(100000)", 1000, 2**20)
    assert answer.rows == 1000 and answer.truncated
    with pytest.raises(RuntimeError, match="cap of 1,048,576 bytes"):
        run_query(
            con, "SELECT i, i::VARCHAR || 'xxxxxxxxxxxxxxxxxxxx' FROM range(1000000) t(i)", 10**7, 2**20
        )


def test_sizes_and_bounds() -> None:
    assert parse_size("1GB") == 10**9 and parse_size("1.5 GiB") == 3 * 2**29 and parse_size("512") == 512
    with pytest.raises(ConfigError):
        parse_size("lots")
    cfg = CollectorConfig(memory_limit="1GB", query_workers=4, query_max_bytes=64 * 2**20)
    assert memory_bound(cfg) == 10**9 + 12 * 64 * 2**20 + 512 * 2**20
    assert memory_bound(CollectorConfig(memory_bound="3GB")) == 3 * 10**9
    with pytest.raises(ConfigError, match="query_reserved"):
        CollectorConfig.resolve({}, {"TRAINDASH_QUERY_WORKERS": "2", "TRAINDASH_QUERY_RESERVED": "2"}, {})

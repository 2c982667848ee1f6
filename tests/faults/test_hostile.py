"""Hostile input: garbage on the ingest socket, hostile SQL on the query socket."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import CollectorProcess, QueryError, run_cli, wait_for
from traindash import wire
from traindash.producer import MetricsLogger
from traindash.wire import Batch, RecordKind, Section

pytestmark = pytest.mark.slow


def valid_body(first: int = 1, n: int = 4) -> dict:
    seqs = np.arange(first, first + n, dtype=np.int64)
    sec = Section(RecordKind.EPISODE, {"seq": seqs, "ts": np.zeros(n), "profit": np.ones(n)})
    return msgpack.unpackb(wire.encode(Batch("fuzz-run", first, first + n - 1, (sec,)))[1], raw=False)


leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=50),
    st.binary(max_size=64),
)
values = st.recursive(
    leaf,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
kinds = st.sampled_from([k.value for k in wire.Kind] + ["run", "episode", "???"])


@st.composite
def hostile_frames(draw: st.DrawFn) -> list[bytes]:
    choice = draw(st.integers(0, 5))
    topic = draw(st.sampled_from([b"batch", b"hb", b"", b"x" * 100]))
    if choice == 0:
        return [topic, draw(st.binary(max_size=2000))]
    if choice == 1:
        body = msgpack.packb(valid_body(), use_bin_type=True)
        return [topic, body[: draw(st.integers(0, len(body) - 1))]]
    if choice == 2:
        body = valid_body()
        key = draw(st.sampled_from(["v", "k", "run", "first", "last", "sections"]))
        body[key] = draw(values)
        return [topic, msgpack.packb(body, use_bin_type=True)]
    if choice == 3:
        body = {"v": 1, "k": draw(kinds), **draw(st.dictionaries(st.text(max_size=8), values, max_size=6))}
        return [topic, msgpack.packb(body, use_bin_type=True)]
    if choice == 4:
        body = valid_body()
        col = draw(st.sampled_from(["seq", "ts", "profit"]))
        body["sections"][0]["cols"][col] = draw(values)
        return [topic, msgpack.packb(body, use_bin_type=True)]
    frames = [topic] + draw(st.lists(st.binary(max_size=100), min_size=0, max_size=4))
    return frames


def test_garbage_on_the_ingest_socket_is_counted_and_everyone_else_is_served(
    collector: CollectorProcess, tmp_path
) -> None:
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(collector.endpoints.ingest)
    try:
        lg = MetricsLogger("victim", output_dir=str(tmp_path), config=collector.producer_config())
        # Let the subscription reach this PUB socket before anything is sent.
        probe = [b"batch", b"\xc1"]
        wait_for(
            lambda: pub.send_multipart(probe) or collector.scalar("SELECT count(*) FROM rejects") > 0,
            20,
            "the collector to see the fuzzer",
        )

        @settings(
            max_examples=400,
            deadline=None,
            derandomize=True,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(hostile_frames())
        def fuzz(frames: list[bytes]) -> None:
            pub.send_multipart(frames)

        fuzz()
        specials = [
            [b"batch", b"\x91" * 100_000 + b"\xc0"],  # deep nesting
            [b"batch", msgpack.packb({"v": 1, "k": "batch", "run": "x" * 2_000_000})],  # huge
            [b"batch", msgpack.packb(dict(valid_body(), first=2**64 - 1))],  # overflow
            [b"batch", msgpack.packb(dict(valid_body(), run="nan-run"), use_bin_type=True)],
        ]
        for frames in specials:
            pub.send_multipart(frames)
        for i in range(500):
            lg.log_episode(i, float("nan") if i % 7 == 0 else float(i), weird=math.inf)
        assert lg.flush(timeout=30)
        lg.close()
    finally:
        pub.close()
        ctx.term()
    assert collector.proc is not None and collector.proc.poll() is None
    assert collector.scalar("SELECT count(*) FROM episodes WHERE run_id LIKE 'victim%'") == 500
    # A well-formed batch from the fuzzer (the NaN-run) is data like any other.
    assert collector.scalar("SELECT count(*) FROM episodes WHERE run_id = 'nan-run'") == 4
    # The fuzz burst may overflow ZeroMQ's high-water marks (dropped frames are the
    # producer's to re-send), so each reason below is sent until it shows up.
    examples = {
        "bad-msgpack": [b"batch", b"\xc1"],
        "bad-frames": [b"batch"],
        "bad-body": [b"batch", msgpack.packb([1, 2])],
        "bad-version": [b"batch", msgpack.packb(dict(valid_body(), v=2), use_bin_type=True)],
        "bad-field": [b"batch", msgpack.packb(dict(valid_body(), run=7), use_bin_type=True)],
        "bad-seq": [b"batch", msgpack.packb(dict(valid_body(), first=2**64 - 1), use_bin_type=True)],
        "unknown-kind": [b"batch", msgpack.packb({"v": 1, "k": "nope"})],
    }

    def counts() -> dict[str, int]:
        return {
            r["reason"]: r["count"] for r in collector.query("SELECT reason, count FROM rejects").to_pylist()
        }

    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(collector.endpoints.ingest)
    try:
        for reason, frames in examples.items():
            wait_for(
                lambda r=reason, f=frames: pub.send_multipart(f) or counts().get(r, 0) > 0,
                20,
                f"a {reason} reject to be counted",
                interval=0.2,
            )
    finally:
        pub.close()
        ctx.term()
    assert sum(counts().values()) > 100
    status = run_cli("status", env=collector.env)
    assert status.returncode == 0 and "bad-msgpack" in status.stdout
    assert "rejected a malformed message from 127.0.0.1 (" in collector.log()


def test_oversized_frames_are_refused_without_hurting_others(
    stopped_collector: CollectorProcess, tmp_path
) -> None:
    c = stopped_collector
    c.extra_env["TRAINDASH_MAX_MESSAGE_BYTES"] = str(1_000_000)
    c.start()
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.connect(c.endpoints.ingest)
    try:
        for _ in range(20):
            pub.send_multipart([b"batch", b"\0" * 5_000_000])
        with MetricsLogger("small", output_dir=str(tmp_path), config=c.producer_config()) as lg:
            for i in range(100):
                lg.log_episode(i, 1.0)
    finally:
        pub.close()
        ctx.term()
    assert c.scalar("SELECT count(*) FROM episodes") == 100


HOSTILE_SQL = [
    ("DROP TABLE episodes", "only read-only"),
    ("DELETE FROM episodes", "only read-only"),
    ("UPDATE runs SET status = 'x'", "only read-only"),
    ("INSERT INTO alerts (level) VALUES ('x')", "only read-only"),
    ("CREATE TABLE evil AS SELECT 1", "only read-only"),
    ("SELECT 1; DROP TABLE episodes", "one statement"),
    ("COPY episodes TO '/tmp/leak.csv'", "only read-only"),
    ("ATTACH '/tmp/other.duckdb' AS o", "only read-only"),
    ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", "disabled"),
    ("SELECT * FROM 'etc_passwd.csv'", ""),
    ("INSTALL httpfs", "only read-only"),
    ("LOAD httpfs", "only read-only"),
    ("SET enable_external_access = true", "only read-only"),
    ("PRAGMA enable_profiling", "only read-only"),
    ("CHECKPOINT", "only read-only"),
    ("EXPORT DATABASE '/tmp/dump'", "only read-only"),
    ("CALL pragma_version()", "only read-only"),
    ("SELECT", "parser error"),
]


def test_hostile_sql_is_refused_and_data_unchanged(stopped_collector: CollectorProcess, tmp_path) -> None:
    c = stopped_collector
    c.extra_env.update(TRAINDASH_QUERY_TIMEOUT="1", TRAINDASH_QUERY_MAX_ROWS="1000")
    c.start()
    with MetricsLogger("data", output_dir=str(tmp_path), config=c.producer_config()) as lg:
        for i in range(50):
            lg.log_episode(i, float(i))
    before = c.query("SELECT * FROM episodes ORDER BY seq").to_pylist()
    for sql, message in HOSTILE_SQL:
        with pytest.raises(QueryError) as info:
            c.query(sql)
        assert message.lower() in str(info.value).lower(), (sql, str(info.value))
    with pytest.raises(QueryError, match="cancelled after 1 s"):
        c.query("SELECT count(*) FROM range(1000000000000) a, range(1000) b")
    from traindash.query import QueryClient

    with QueryClient(c.endpoints.query, timeout=10) as client:
        big = client.query("SELECT * FROM range(100000)")
        assert big.num_rows == 1000 and client.last_truncated
    assert c.query("SELECT * FROM episodes ORDER BY seq").to_pylist() == before
    assert c.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'evil'") == 0
    assert c.scalar("SELECT current_setting('enable_external_access')") is False

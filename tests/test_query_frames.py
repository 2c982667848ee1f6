"""Query results in frames of their own and in parts, on a live collector (docs/queries.md)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pyarrow as pa
import pytest
import zmq

from tests.harness import CollectorProcess, free_endpoints
from traindash import wire
from traindash.collector.queryrun import PART_BYTES
from traindash.query import QueryClient, QueryError, read_arrow

# 1,000,000 rows of two 8-byte columns: 16 MB of Arrow, so several 4 MiB parts.
BIG = "SELECT i, i * 0.5 AS x FROM range(1000000) t(i) ORDER BY i"


def exchange(endpoint: str, query: wire.Query, timeout_ms: int = 60_000) -> list[list[bytes]]:
    """The raw replies to one query, up to its result or error, as a raw client sees them."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    replies: list[list[bytes]] = []
    try:
        sock.send_multipart(wire.encode(query))
        while sock.poll(timeout_ms):
            frames = sock.recv_multipart()
            replies.append(frames)
            if frames[0] in (b"result", b"error"):
                return replies
        raise AssertionError(f"no answer within {timeout_ms} ms; got {[f[0] for f in replies]}")
    finally:
        sock.close(0)
        ctx.term()


def test_a_large_result_comes_in_parts_equal_to_the_whole_an_older_client_gets(
    collector: CollectorProcess,
) -> None:
    framed = exchange(collector.endpoints.query, wire.Query(BIG, 1_000_000, 1, arrow_frame=True))
    kinds = [f[0] for f in framed if f[0] != b"progress"]
    assert kinds[-1] == b"result" and kinds.count(b"part") >= 16_000_000 // PART_BYTES - 1, kinds
    messages = [wire.decode(f) for f in framed if f[0] != b"progress"]
    last = messages[-1]
    assert isinstance(last, wire.Result) and last.arrow_frame and not last.truncated
    assert last.parts == len(messages) - 1
    table = read_arrow(*(m.arrow for m in messages))  # type: ignore[union-attr]
    # An older client (no arrow_frame) gets the whole stream in one msgpack map, as before.
    (old,) = [
        f for f in exchange(collector.endpoints.query, wire.Query(BIG, 1_000_000, 2)) if f[0] != b"progress"
    ]
    assert len(old) == 2 and "arrow" in msgpack.unpackb(old[1])
    whole = read_arrow(wire.decode(old).arrow)  # type: ignore[union-attr]
    assert table.num_rows == 1_000_000 and table.equals(whole)
    with QueryClient(collector.endpoints.query, timeout=60) as client:
        allocated = pa.total_allocated_bytes()
        got = client.query(BIG)
        # The table's columns are views of ZeroMQ's receive buffers: Arrow copied nothing.
        assert pa.total_allocated_bytes() - allocated < 1_000_000
        assert got.equals(whole) and not client.last_truncated
        capped = client.query(BIG, max_rows=600_000)
        assert client.last_truncated and capped.equals(whole.slice(0, 600_000))


@pytest.fixture
def small_cap(tmp_path: Path) -> Iterator[CollectorProcess]:
    c = CollectorProcess(
        db=tmp_path / "td.duckdb",
        endpoints=free_endpoints(),
        log_path=tmp_path / "collector.log",
        extra_env={"TRAINDASH_QUERY_MAX_BYTES": str(2 * PART_BYTES + PART_BYTES // 2)},
    )
    try:
        yield c.start()
    finally:
        c.kill()


def test_a_result_that_passes_the_byte_cap_after_some_parts_is_an_error(small_cap: CollectorProcess) -> None:
    replies = exchange(small_cap.endpoints.query, wire.Query(BIG, 1_000_000, 1, arrow_frame=True))
    kinds = [f[0] for f in replies if f[0] != b"progress"]
    assert kinds[:2] == [b"part", b"part"] and kinds[-1] == b"error", kinds
    assert "query_max_bytes" in wire.decode(replies[-1]).message  # type: ignore[union-attr]
    with QueryClient(small_cap.endpoints.query, timeout=60) as client:
        with pytest.raises(QueryError, match="query_max_bytes"):
            client.query(BIG)
        # The parts of the failed answer do not leak into the next one.
        assert client.query("SELECT 42 AS n").column("n").to_pylist() == [42]


def test_a_client_counts_the_parts_and_reads_an_older_collector_s_single_reply() -> None:
    # A ROUTER drops messages past its high-water mark: a client that misses a part says so
    # rather than return fewer rows. An older collector ignores arrow_frame and answers in
    # one msgpack map, as before.
    ctx = zmq.Context()
    server = ctx.socket(zmq.ROUTER)
    server.setsockopt(zmq.LINGER, 0)
    port = server.bind_to_random_port("tcp://127.0.0.1")

    def stream(rows: int) -> memoryview:
        table = pa.table({"n": list(range(rows))})
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return memoryview(sink.getvalue())

    def answer() -> None:
        for _ in range(3):
            if not server.poll(30_000):
                return
            envelope, *request = server.recv_multipart()
            query = wire.decode(request)
            assert isinstance(query, wire.Query) and query.arrow_frame and query.id is not None
            if query.sql == "older collector":
                sends: list[wire.Message] = [wire.Result(bytes(stream(4)), False, query.id)]
            else:
                sends = [wire.Progress(query.id, 0, True), wire.Part(query.id, stream(3))]
                lost = query.sql == "lose one"
                sends.append(wire.Result(stream(2), False, query.id, True, parts=2 if lost else 1))
            for msg in sends:
                server.send_multipart([envelope, *wire.encode(msg)], copy=False)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        with QueryClient(f"tcp://127.0.0.1:{port}", timeout=30, ctx=ctx) as client:
            assert client.query("keep all").column("n").to_pylist() == [0, 1, 2, 0, 1]
            with pytest.raises(QueryError, match="1 of the 2 parts .* lost"):
                client.query("lose one")
            assert client.query("older collector").column("n").to_pylist() == [0, 1, 2, 3]
    finally:
        thread.join(timeout=30)
        server.close(0)
        ctx.term()

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from traindash import wire
from traindash.wire import Batch, RecordKind, Section, WireError


def _batch(first: int = 1, n: int = 3, run: str = "r1") -> Batch:
    seqs = np.arange(first, first + n, dtype=np.int64)
    cols = {
        "seq": seqs,
        "ts": np.full(n, 1.7e9),
        "profit": np.linspace(-1, 1, n),
        "episode": np.arange(n, dtype=np.int64),
        "extra": [{"k": i} for i in range(n)],
    }
    return Batch(run, first, first + n - 1, (Section(RecordKind.EPISODE, cols),))


def test_batch_round_trip_keeps_types_and_unknown_fields() -> None:
    topic, body = wire.encode(_batch())
    assert topic == wire.TOPIC_BATCH
    msg = wire.decode([topic, body])
    assert isinstance(msg, Batch) and (msg.first, msg.last) == (1, 3)
    cols = msg.sections[0].cols
    assert cols["profit"].dtype == np.float64 and cols["episode"].dtype == np.int64
    assert cols["profit"].tolist() == [-1.0, 0.0, 1.0]
    assert cols["extra"] == [{"k": 0}, {"k": 1}, {"k": 2}]


def test_columns_travel_as_binary_buffers_not_per_value_objects() -> None:
    body = msgpack.unpackb(wire.encode(_batch(n=1000))[1], raw=False)
    code, payload = body["sections"][0]["cols"]["profit"]
    assert code == "f8" and isinstance(payload, bytes) and len(payload) == 8000


@pytest.mark.parametrize(
    "msg",
    [
        wire.Heartbeat("r", 5, 1.5, "host", 42),
        wire.Ack("r", 7),
        wire.Ack("r", 7, have=9, probe=1.75),
        wire.Query("SELECT 1", 10),
        wire.Result(b"arrow", True),
        wire.Error("nope"),
    ],
)
def test_control_messages_round_trip(msg: wire.Message) -> None:
    assert wire.decode(wire.encode(msg)) == msg


def test_ack_and_rows_topics_are_delimited_per_run() -> None:
    assert wire.ack_topic("ab") == b"ack\0ab\0"
    assert not wire.ack_topic("abc").startswith(wire.ack_topic("ab"))
    topic, _ = wire.encode(wire.Rows("r1", _batch().sections[0]))
    assert topic.startswith(wire.rows_topic(RecordKind.EPISODE, "r1"))


def _body(**over: object) -> bytes:
    base = msgpack.unpackb(wire.encode(_batch())[1], raw=False)
    base.update(over)
    return msgpack.packb(base, use_bin_type=True)


@pytest.mark.parametrize(
    "frames, reason",
    [
        ([b"batch"], "bad-frames"),
        ([b"batch", b"\xc1\xff garbage"], "bad-msgpack"),
        ([b"batch", msgpack.packb([1, 2])], "bad-body"),
        ([b"batch", _body(v=99)], "bad-version"),
        ([b"batch", _body(k="nope")], "unknown-kind"),
        ([b"batch", _body(run="")], "bad-run-id"),
        ([b"batch", _body(run=5)], "bad-field"),
        ([b"batch", _body(first=3, last=1)], "bad-seq"),
        ([b"batch", _body(last=9)], "bad-seq"),
        ([b"batch", _body(first=-1)], "bad-seq"),
        ([b"batch", _body(first=2**63)], "bad-seq"),
        ([b"batch", _body(sections=[{"kind": "weird", "cols": {}}])], "unknown-record-kind"),
        ([b"batch", _body(sections="x")], "bad-field"),
    ],
)
def test_malformed_messages_raise_wire_error(frames: list[bytes], reason: str) -> None:
    with pytest.raises(WireError) as info:
        wire.decode(frames)
    assert info.value.reason == reason


def test_bad_columns_are_rejected() -> None:
    base = msgpack.unpackb(wire.encode(_batch())[1], raw=False)
    cols = base["sections"][0]["cols"]
    for name, col in [
        ("drop table", ["f8", b"\0" * 24]),
        ("x", ["f8", b"\0" * 5]),
        ("x", ["f8", b"\0" * 16]),
        ("x", ["c16", b""]),
        ("x", ["obj", "nope"]),
    ]:
        broken = dict(cols, **{name: col})
        body = dict(base, sections=[{"kind": "episode", "cols": broken}])
        with pytest.raises(WireError):
            wire.decode([b"batch", msgpack.packb(body, use_bin_type=True)])


def test_duplicate_seqs_inside_a_batch_are_rejected() -> None:
    b = _batch()
    cols = dict(b.sections[0].cols, seq=np.array([1, 1, 3], dtype=np.int64))
    with pytest.raises(WireError, match="exactly once"):
        wire.decode(wire.encode(Batch("r1", 1, 3, (Section(RecordKind.EPISODE, cols),))))


def test_limits_bound_unpacking() -> None:
    big = wire.encode(wire.Error("x" * 5000))
    with pytest.raises(WireError, match="bad-msgpack"):
        wire.decode(big, wire.Limits(max_str_len=1000))


def test_manage_round_trip_and_validation() -> None:
    msg = wire.Manage("archive", ("a", "b"))
    assert wire.decode(wire.encode(msg)) == msg
    bad = msgpack.packb({"v": 1, "k": "manage", "action": "drop", "runs": ["a"]})
    with pytest.raises(WireError, match="action"):
        wire.decode([b"manage", bad])
    bad_run = msgpack.packb({"v": 1, "k": "manage", "action": "delete", "runs": [""]})
    with pytest.raises(WireError, match="bad-run-id"):
        wire.decode([b"manage", bad_run])


def test_batch_ack_flag_round_trips_and_defaults_to_true() -> None:
    quiet = wire.Batch("r", 1, 1, _batch(n=1).sections, ack=False)
    body = msgpack.unpackb(wire.encode(quiet)[1], raw=False)
    assert body["ack"] is False
    assert wire.decode(wire.encode(quiet)).ack is False  # type: ignore[union-attr]
    assert "ack" not in msgpack.unpackb(wire.encode(_batch(n=1))[1], raw=False)
    assert wire.decode(wire.encode(_batch(n=1))).ack is True  # type: ignore[union-attr]
    body["ack"] = "no"
    with pytest.raises(wire.WireError) as err:
        wire.decode([wire.TOPIC_BATCH, msgpack.packb(body, use_bin_type=True)])
    assert err.value.reason == "bad-field"


def test_query_lanes_progress_cancel_and_stats_round_trip() -> None:
    for msg in (
        wire.Query("SELECT 1", 10, 7, "service", 2.5),
        wire.Progress(7, 3, False),
        wire.Cancel(7),
        wire.Stats("server", 8),
        wire.Error("no", 7),
        wire.Result(b"arrow", True, 7),
        wire.Manage("archive", ("a",), 9),
    ):
        assert wire.decode(wire.encode(msg)) == msg
    bad = msgpack.packb({"v": 1, "k": "query", "sql": "x", "max_rows": 1, "id": 1, "lane": "vip"})
    with pytest.raises(WireError, match="lane"):
        wire.decode([b"query", bad])


def test_a_query_from_an_older_client_and_to_an_older_collector() -> None:
    # An older client sends neither id, lane nor timeout: the defaults apply.
    old = msgpack.packb({"v": 1, "k": "query", "sql": "SELECT 1", "max_rows": 5})
    assert wire.decode([b"query", old]) == wire.Query("SELECT 1", 5)
    # Without an id nothing new goes on the wire, so an older collector reads it as before.
    assert msgpack.unpackb(wire.encode(wire.Query("SELECT 1", 5))[1]) == {
        "v": 1,
        "k": "query",
        "sql": "SELECT 1",
        "max_rows": 5,
    }
    assert "id" not in msgpack.unpackb(wire.encode(wire.Result(b"x"))[1])


def test_rows_name_their_stream_and_older_rows_have_none() -> None:
    section = wire.Section(
        wire.RecordKind.EPISODE, {"seq": np.array([1], dtype=np.int64), "ts": np.array([1.0])}
    )
    for stream in ("env_runner_1-42", None):
        back = wire.decode(wire.encode(wire.Rows("run-1", section, stream)))
        assert isinstance(back, wire.Rows)
        assert (back.run_id, back.stream) == ("run-1", stream)


def test_a_result_in_parts_travels_in_frames_of_its_own_and_an_older_collector_ignores_the_ask() -> None:
    arrow = memoryview(bytearray(b"arrow ipc stream"))
    frames = wire.encode(wire.Result(arrow, True, 7, arrow_frame=True, parts=2))
    assert len(frames) == 3 and frames[2] is arrow
    assert "arrow" not in msgpack.unpackb(frames[1])
    msg = wire.decode(frames)
    assert isinstance(msg, wire.Result) and msg.arrow is arrow and msg.truncated
    assert (msg.id, msg.parts, msg.arrow_frame) == (7, 2, True)
    part = wire.encode(wire.Part(7, arrow))
    assert part[0] == b"part" and part[2] is arrow and wire.decode(part) == wire.Part(7, arrow)
    # The ask is one more field of the query, which an older collector does not read.
    query = wire.Query("SELECT 1", 5, 3, "console", 2.0, arrow_frame=True)
    assert msgpack.unpackb(wire.encode(query)[1])["arrow_frame"] is True
    assert wire.decode(wire.encode(query)) == query
    # Without the ask the result is as before: two frames, the stream inside the msgpack map.
    assert msgpack.unpackb(wire.encode(wire.Result(b"x", id=3))[1])["arrow"] == b"x"
    with pytest.raises(WireError, match="frames"):
        wire.decode([*wire.encode(wire.Error("no", 1)), b"extra"])
    with pytest.raises(WireError, match="frames"):
        wire.decode(frames[:2])
    with pytest.raises(WireError, match="frames"):
        wire.decode(part[:2])

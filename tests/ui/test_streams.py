"""Live views of a run written by several streams: rows are de-duplicated per (kind, stream)."""

from __future__ import annotations

import duckdb
import numpy as np

from traindash.collector.migrations import migrations
from traindash.ui import history
from traindash.ui.series import EPISODE_COLUMNS, EPISODE_SOURCE
from traindash.ui.streams import SeqMarks, merge_window
from traindash.wire import RecordKind

EP = RecordKind.EPISODE


def cols(*seqs: int) -> dict[str, np.ndarray]:
    return {"seq": np.array(seqs, dtype=np.int64), "episode": np.array(seqs, dtype=np.float64)}


def test_two_streams_with_overlapping_seqs_keep_every_row_once() -> None:
    marks = SeqMarks()
    marks.seed(EP, [1, 2, 3, 1, 2], ["a", "a", "a", "b", "b"])  # what the history shows
    got: list[tuple[str, int]] = []
    for stream, seqs in (("a", (2, 3, 4, 5)), ("b", (2, 3)), ("b", (4,)), ("a", (6,)), ("b", (5, 6))):
        new = marks.take(EP, stream, cols(*seqs))
        got += [(stream, int(s)) for s in (new or {"seq": []})["seq"]]
    assert got == [("a", 4), ("a", 5), ("b", 3), ("b", 4), ("a", 6), ("b", 5), ("b", 6)]
    # A section delivered again (a reconnecting feed) adds nothing, in either stream.
    assert marks.take(EP, "b", cols(3, 4)) is None and marks.take(EP, "a", cols(5, 6)) is None
    # Kinds keep their own marks; ids are stable, 0 for a run's only writer.
    assert marks.take(RecordKind.MODEL, "a", cols(1)) is not None
    assert (marks.sid(None), marks.sid("a"), marks.sid("b"), marks.sid("c")) == (0, 1, 2, 3)


def test_a_one_writer_run_keeps_one_seq_space() -> None:
    marks = SeqMarks()
    marks.seed(EP, [1, 2, 3])
    assert marks.take(EP, None, cols(2, 3)) is None
    assert marks.take(EP, None, cols(3, 4, 5))["seq"].tolist() == [4, 5]  # type: ignore[index]
    assert marks.mark(EP) == 5


def _source(seq: list[int], sid: list[int], ts: list[float], episode: list[float]) -> dict[str, np.ndarray]:
    n = len(seq)
    out = {c: np.zeros(n) for c in EPISODE_SOURCE}
    out.update(
        seq=np.array(seq, dtype=np.int64),
        sid=np.array(sid, dtype=np.int64),
        ts=np.array(ts, dtype=float),
        episode=np.array(episode, dtype=float),
    )
    return out


def test_a_zoomed_window_is_merged_per_stream_in_time_order() -> None:
    # Shown: a's 1..4 and b's 1..3 (ts interleaved); b's 3 came after the fine query.
    shown = _source(
        [1, 1, 2, 2, 3, 3, 4], [1, 2, 1, 2, 1, 2, 1], [1, 1.5, 2, 2.5, 3, 3.5, 4], [1, 1, 2, 2, 3, 3, 4]
    )
    fine = _source([2, 2, 3], [1, 2, 1], [2, 2.5, 3], [2, 2, 3])
    merged = merge_window(shown, fine, 2, 3, EPISODE_SOURCE)
    pairs = list(zip(merged["sid"].tolist(), merged["seq"].tolist(), strict=True))
    assert pairs == [(1, 1), (2, 1), (1, 2), (2, 2), (1, 3), (2, 3), (1, 4)]
    assert merged["ts"].tolist() == sorted(merged["ts"].tolist())


def _db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for m in migrations():
        m.up(con)
    # Stream a logs 3 episodes per b's 1, so a's seqs run far ahead of b's.
    con.execute(
        "INSERT INTO episodes (run_id, stream, seq, ts, episode, profit) "
        "SELECT 'r', 'a', i, to_timestamp(1.7e9 + i)::TIMESTAMP, i, i FROM range(1, 3001) t(i)"
    )
    con.execute(
        "INSERT INTO episodes (run_id, stream, seq, ts, episode, profit) "
        "SELECT 'r', 'b', i, to_timestamp(1.7e9 + 3 * i + 0.5)::TIMESTAMP, i, -i FROM range(1, 1001) t(i)"
    )
    return con


def test_history_of_several_streams_marks_each_streams_newest_row() -> None:
    con = _db()
    for max_points in (10_000, 400):  # exact, then downsampled per stream
        sql = history.series_sql(history.EPISODES, "r", 4000, max_points, multi=True)
        table = con.sql(sql).to_arrow_table()
        got = history.columns_of(table, EPISODE_COLUMNS)
        streams = table.column("stream").to_pylist()
        assert len(got["seq"]) <= max_points
        assert got["ts"].tolist() == sorted(got["ts"].tolist())  # time order, not seq
        marks = SeqMarks()
        marks.seed(EP, got["seq"], streams)
        assert (marks.mark(EP, "a"), marks.mark(EP, "b")) == (3000, 1000)
        assert {"a", "b"} == set(streams)
    # The one-writer SQL is unchanged.
    assert "stream" not in history.series_sql(history.EPISODES, "r", 10, 4000)


def test_kpis_model_tail_and_scalars_of_several_streams_follow_time() -> None:
    con = _db()
    kpi = con.execute(history.kpi_sql("r", "profit", multi=True)).fetchone()
    assert kpi is not None and kpi[:3] == (4000, 1000, -1000.0)  # the newest row in time: b's last
    recent = kpi[5]  # the last rows in time, oldest first (not the highest seqs, all a's)
    assert recent[-2:] == [3000.0, -1000.0] and -999.0 in recent
    assert con.execute(history.model_summary_sql("r", multi=True)).fetchone() == (0, None)
    con.execute(
        "INSERT INTO scalars (run_id, stream, seq, ts, step, name, value) "
        "SELECT 'r', s, i, now(), i, 'loss', i FROM range(1, 2001) t(i), (VALUES ('a'), ('b')) v(s)"
    )
    rows = con.execute(history.scalars_sql("r", max_points=400, multi=True)).fetchall()
    assert 0 < len(rows) <= 400 + 8
    for stream in ("a", "b"):
        seqs = [r[1] for r in rows if r[5] == stream]
        assert min(seqs) == 1 and max(seqs) == 2000  # each stream's ends survive

"""Live views of a run written by several streams: rows are de-duplicated per (kind, stream)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np

from tests.harness import CollectorProcess, wait_for
from traindash.collector.migrations import migrations
from traindash.producer import MetricsLogger
from traindash.query import QueryClient
from traindash.ui import history
from traindash.ui.feed import RowsFeed
from traindash.ui.history import fetch_history
from traindash.ui.pages.live import RunView
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


def test_the_live_views_data_source_holds_every_row_of_two_streams(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    """Two streams of one run log episodes with overlapping seqs through a real collector; the
    live page's run view (history, then the rows feed) ends up holding each row once."""
    run = "two-writers"
    feed = RowsFeed(collector.endpoints.rows)
    buffer = feed.register()
    feed.start()
    view = RunView(run, run, "#1f77b4")
    loggers = {
        s: MetricsLogger(
            "streams", output_dir=str(tmp_path / s), run_id=run, stream=s, config=collector.producer_config()
        )
        for s in ("a", "b")
    }

    def log(stream: str, first: int, n: int) -> None:
        for e in range(first, first + n):
            loggers[stream].log_episode(e, profit=float(e))
        loggers[stream].flush()

    def stored() -> int:
        return int(collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{run}'") or 0)

    try:
        log("a", 1, 1)  # until the feed hears a row, its subscription may not be in place
        wait_for(lambda: feed.received > 0, 30, "the rows feed to hear the collector")
        log("a", 2, 29)
        log("b", 1, 10)
        wait_for(lambda: stored() == 40, 30, "the first episodes")
        with QueryClient(collector.endpoints.query, timeout=10.0) as client:
            view.apply(fetch_history(client, run))  # the feed holds these rows too
        log("b", 11, 10)  # seqs below a's newest
        log("a", 31, 5)
        wait_for(lambda: stored() == 55, 30, "the later episodes")
        source = view.sources.episodes

        def shown() -> int:
            items, lost = buffer.drain()
            assert not lost
            for rows in items:
                if rows.run_id == run and rows.section.kind is RecordKind.EPISODE:
                    new = view.new_rows(RecordKind.EPISODE, rows.stream, rows.section.cols)
                    if new is not None:
                        source.stream(new)  # type: ignore[arg-type]
            return len(source.data["seq"])

        wait_for(lambda: shown() >= 55, 30, "every row in the live view")
    finally:
        for lg in loggers.values():
            lg.close()
        feed.stop()
    held = sorted(
        (view.marks.names[sid], int(seq))
        for sid, seq in zip(source.data["sid"], source.data["seq"], strict=True)
    )
    rows = collector.query(f"SELECT stream, seq FROM episodes WHERE run_id = '{run}'").to_pylist()
    assert held == sorted((r["stream"], r["seq"]) for r in rows)  # each row once, none missing
    assert {s for s, _ in held} == {"a", "b"}

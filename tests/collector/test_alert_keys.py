"""The alerts table holds at most one row per alert key; watermarks never move back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from traindash.collector.store import Store, Work
from traindash.wire import RecordKind, Section


def alert(seq: int, key: str | None, row_seq: int | None) -> tuple[str, Section]:
    cols = {
        "seq": np.array([seq]),
        "ts": np.array([1.0]),
        "level": ["critical"],
        "rule": ["nan_metric"],
        "run_id": ["run-1"],
        "alert_key": [key],
        "row_seq": [row_seq],
        "channels": [["slack"]],
    }
    return "alerts-stream", Section(RecordKind.ALERT, cols)


def mark(seq: int, runs: list[str], seqs: list[int]) -> tuple[str, Section]:
    cols = {
        "seq": np.array([seq]),
        "ts": np.array([2.0]),
        "consumer": ["c"],
        "run_ids": [runs],
        "evaluated_seqs": [seqs],
    }
    return "alerts-stream", Section(RecordKind.MARK, cols)


def test_one_row_per_key_within_a_commit_and_across_commits(tmp_path: Path) -> None:
    store = Store(tmp_path / "td.duckdb")
    try:
        store.commit(
            Work(sections=[alert(1, "k1", 5), alert(2, "k1", 5), alert(3, None, None)], marks={"a": 3})
        )
        store.commit(
            Work(sections=[alert(4, "k1", 5), alert(5, "k2", 7), alert(6, None, None)], marks={"a": 6})
        )
        rows = store.con.execute("SELECT seq, alert_key, row_seq FROM alerts ORDER BY seq").fetchall()
        assert rows == [(1, "k1", 5), (3, None, None), (5, "k2", 7), (6, None, None)]
    finally:
        store.close()


def test_watermarks_are_upserted_and_never_move_back(tmp_path: Path) -> None:
    store = Store(tmp_path / "td.duckdb")
    try:
        store.commit(
            Work(sections=[mark(1, ["a", "b"], [5, 7]), mark(2, ["a", "*"], [9, 0])], marks={"s": 2})
        )
        store.commit(Work(sections=[mark(3, ["b"], [3])], marks={"s": 3}))
        rows = store.con.execute("SELECT run_id, evaluated_seq FROM alert_marks ORDER BY run_id").fetchall()
        assert rows == [("*", 0), ("a", 9), ("b", 7)]
    finally:
        store.close()

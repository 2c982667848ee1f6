"""Per-run marks (acked_seq, last_seen, status) written alone or with other runs agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from traindash.collector.store import Store, Work

T0 = 1.7e9


def _state(store: Store, run_id: str) -> tuple:
    return store.con.execute(
        "SELECT acked_seq, epoch_us(last_seen), status FROM runs WHERE run_id = ?", [run_id]
    ).fetchone()


@pytest.mark.parametrize("together", [False, True], ids=["one run a commit", "two runs a commit"])
def test_marks(tmp_path: Path, together: bool) -> None:
    store = Store(tmp_path / "m.duckdb")

    def commit(marks: dict[str, int], seen: dict[str, float]) -> None:
        if together:
            marks, seen = {**marks, "other": 1}, {**seen, "other": T0}
        store.commit(Work(marks=marks, seen=seen))

    commit({"r": 10}, {"r": T0})
    assert _state(store, "r") == (10, int(T0 * 1e6), "running")
    commit({}, {"r": T0 + 5})  # a heartbeat: liveness only, the mark stays
    assert _state(store, "r") == (10, int((T0 + 5) * 1e6), "running")
    commit({"r": 20}, {})  # rows without a liveness stamp: last_seen stays
    assert _state(store, "r") == (20, int((T0 + 5) * 1e6), "running")
    for status in ("stalled", "lost"):
        store.con.execute("UPDATE runs SET status = ? WHERE run_id = 'r'", [status])
        commit({}, {"r": T0 + 9})
        assert _state(store, "r")[2] == "running"
    store.con.execute("UPDATE runs SET status = 'finished' WHERE run_id = 'r'")
    commit({"r": 21}, {"r": T0 + 10})
    assert _state(store, "r") == (21, int((T0 + 10) * 1e6), "finished")
    if together:
        assert _state(store, "other") == (1, int(T0 * 1e6), "running")
    store.close()

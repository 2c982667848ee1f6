"""Streams of a run in the store: marks per stream key, liveness on their own, rows under the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from traindash.collector.store import Store, Work
from traindash.wire import RecordKind, Section, split_stream_key, stream_key

T0 = 1.7e9


def run_section(seq: int, **fields: object) -> Section:
    cols: dict = {"seq": np.array([seq], dtype=np.int64), "ts": np.array([T0])}
    cols.update({k: [v] for k, v in fields.items()})
    return Section(RecordKind.RUN, cols)


def episodes(first: int, n: int) -> Section:
    return Section(
        RecordKind.EPISODE,
        {
            "seq": np.arange(first, first + n, dtype=np.int64),
            "ts": np.full(n, T0),
            "episode": np.arange(n, dtype=np.int64),
            "episode_return": np.ones(n),
        },
    )


def test_keys_split_back() -> None:
    assert split_stream_key(stream_key("r", "env_runner_1-42")) == ("r", "env_runner_1-42")
    assert split_stream_key("plain") == ("plain", None)
    assert stream_key("r", None) == "r"


def test_streams_marks_liveness_and_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.duckdb")
    a, b = "job#a", "job#b"
    store.commit(
        Work(
            sections=[
                (
                    a,
                    run_section(1, experiment="x", name="job", host="h1", pid=1, hyperparameters={"lr": 0.1}),
                ),
                (a, episodes(2, 3)),
                (b, run_section(1, experiment="x", host="h2", pid=2, worker="env_runner_2")),
                (b, episodes(2, 2)),
                ("solo", run_section(1, experiment="y")),
            ],
            marks={a: 4, b: 3, "solo": 1},
            seen={a: T0, b: T0, "solo": T0},
        )
    )
    assert store.marks() == {"job": 0, "solo": 1, a: 4, b: 3}
    rows = store.con.execute(
        "SELECT run_id, stream, count(*) FROM episodes GROUP BY ALL ORDER BY 2"
    ).fetchall()
    assert rows == [("job", "a", 3), ("job", "b", 2)]
    run = store.con.execute(
        "SELECT name, host, hyperparameters, status FROM runs WHERE run_id = 'job'"
    ).fetchone()
    assert run == ("job", "h1", '{"lr": 0.1}', "running")  # the first stream's fields stay
    assert store.con.execute("SELECT worker FROM streams WHERE stream_key = ?", [b]).fetchone() == (
        "env_runner_2",
    )
    # b keeps beating, a goes silent: a alone is lost, the run lives.
    store.commit(Work(seen={b: T0 + 100}))
    store.update_liveness(T0 + 101, stall_after=5, lost_after=30)
    status = dict(store.con.execute("SELECT stream, status FROM streams").fetchall())
    assert status == {"a": "lost", "b": "running"}
    assert store.con.execute("SELECT status FROM runs WHERE run_id = 'job'").fetchone() == ("running",)
    assert store.con.execute("SELECT status FROM runs WHERE run_id = 'solo'").fetchone() == ("lost",)
    # The run ends with its last live stream.
    store.commit(
        Work(
            sections=[
                (
                    b,
                    Section(
                        RecordKind.END,
                        {"seq": np.array([4]), "ts": np.array([T0 + 102]), "status": ["finished"]},
                    ),
                )
            ],
            marks={b: 4},
        )
    )
    assert store.con.execute("SELECT status FROM runs WHERE run_id = 'job'").fetchone() == ("finished",)
    store.close()
    reopened = Store(tmp_path / "s.duckdb")
    assert reopened.marks()[b] == 4 and reopened.marks()[a] == 4
    reopened.close()

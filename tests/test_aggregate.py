"""Groups of runs on a common grid: traindash.groups, traindash.curves, traindash.aggregate.

The database is a real traindash file (the collector's Store runs the migrations), filled with
SQL; the source is a DuckDB connection, read like any query client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pytest

from traindash.aggregate import compare, final_scores, group_curves
from traindash.collector.store import Store
from traindash.groups import Run, group_runs, is_seed_key


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    path = tmp_path / "td.duckdb"
    Store(path).close()
    c = duckdb.connect(str(path))
    # fractional x values exercise the interpolation exactly; the real column is BIGINT env steps
    c.execute("ALTER TABLE episodes ALTER COLUMN env_step TYPE DOUBLE")
    try:
        yield c
    finally:
        c.close()


def add_run(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    hp: dict,
    tags: tuple[str, ...] = (),
    status: str = "finished",
) -> None:
    con.execute(
        "INSERT INTO runs (run_id, name, status, hyperparameters, tags, started_at) "
        "VALUES (?, ?, ?, ?, ?, now())",
        [run_id, run_id, status, json.dumps(hp), list(tags)],
    )


def add_points(con: duckdb.DuckDBPyConnection, run_id: str, x: np.ndarray, y: np.ndarray) -> None:
    start = con.execute("SELECT count(*) FROM episodes WHERE run_id = ?", [run_id]).fetchone()[0]
    rows = [
        (run_id, start + i + 1, start + i + 1, float(b), float(a))
        for i, (a, b) in enumerate(zip(x, y, strict=True))
    ]
    con.executemany(
        "INSERT INTO episodes (run_id, seq, episode, profit, env_step) VALUES (?, ?, ?, ?, ?)", rows
    )


S3 = np.concatenate([[3.0], 41 + np.cumsum(np.random.RandomState(0).uniform(1, 30, 14))])
T1 = np.arange(0, 2001, 130.0)  # passes 1500, the grid's last point, between two points
T2 = 50 + 7.25 * np.arange(201)  # 50 .. 1500
A_LINE, B_LINE = (2.0, (1.0, 2.0, 3.0)), (-1.0, (10.0, 20.0))


@pytest.fixture
def sweep(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """lr=0.1: three seeds of different lengths and spacings on y = 2x + 1, 2, 3 (x = env_step);
    lr=0.2: two seeds on y = -x + 10, 20. Seed s3 has one point far before the others begin."""
    a = {"s1": np.arange(0, 501, 10.0), "s2": 37 * np.arange(1, 21.0), "s3": S3}
    for (name, x), b in zip(a.items(), A_LINE[1], strict=True):
        add_run(con, name, {"lr": 0.1, "gamma": 0.99, "seed": int(b)})
        add_points(con, name, x, A_LINE[0] * x + b)
    for (name, x), b in zip({"t1": T1, "t2": T2}.items(), B_LINE[1], strict=True):
        add_run(con, name, {"lr": 0.2, "gamma": 0.99, "random_seed": int(b)})
        add_points(con, name, x, B_LINE[0] * x + b)
    return con


def test_the_band_covers_only_what_every_run_in_the_group_has_reached(
    sweep: duckdb.DuckDBPyConnection,
) -> None:
    result = compare(sweep, x="env_step", stat="mean", points=300)
    assert [g.label for g in result.groups] == ["lr=0.1", "lr=0.2"]
    a, b = result.groups
    assert a.reach == (37.0, S3[-1]) and b.reach == (50.0, 1500.0)
    grid = result.grid
    assert (
        grid is not None and grid.lo == 37.0 and grid.x(np.array([grid.points - 1]))[0] == pytest.approx(1500)
    )
    assert a.x[0] == 37.0 and a.x[-1] <= S3[-1] < a.x[-1] + grid.dx
    assert 50.0 <= b.x[0] < 50.0 + grid.dx and b.x[-1] == pytest.approx(1500.0) and b.x[-1] <= 1500.0
    # every run lies on a line, so its interpolated curve is exact, ends included (s3 and t1
    # reach past the grid's ends only through single far points)
    for g, (slope, offsets) in ((a, A_LINE), (b, B_LINE)):
        np.testing.assert_allclose(g.center, slope * g.x + np.mean(offsets), rtol=1e-9, atol=1e-9)
        assert (g.low <= g.center + 1e-9).all() and (g.center <= g.high + 1e-9).all()
        assert (g.low >= slope * g.x + min(offsets) - 1e-9).all()
        assert (g.high <= slope * g.x + max(offsets) + 1e-9).all()
    curves = group_curves(sweep, x="env_step", points=300)
    assert set(curves.column("group").to_pylist()) == {"lr=0.1", "lr=0.2"}
    per = {r["group"]: r for r in final_scores(sweep, x="env_step", points=300).to_pylist()}
    assert per["lr=0.1"]["n"] == 3 and per["lr=0.2"]["n"] == 2
    assert per["lr=0.1"]["x_final"] == S3[-1] and per["lr=0.2"]["x_final"] == 1500.0


def test_the_episode_axis_and_growing_runs(sweep: duckdb.DuckDBPyConnection) -> None:
    """Recomputing sees new rows: the common range grows as the shortest run goes on."""
    before = compare(sweep, x="episode", group_by="lr")
    a = before.groups[0]
    assert a.reach == (1.0, float(len(S3)))  # s3 has the fewest episodes
    assert list(a.x) == list(np.arange(1.0, len(S3) + 1))  # a whole-step grid: never finer than 1 episode
    more = S3[-1] + 10 * np.arange(1, 60)
    add_points(sweep, "s3", more, 2 * more + 3)
    after = compare(sweep, x="episode", group_by="lr")
    assert after.groups[0].reach == (1.0, 20.0)  # now s2, with 20 episodes, is the shortest


def test_rows_without_a_finite_value_are_skipped(sweep: duckdb.DuckDBPyConnection) -> None:
    add_points(sweep, "s1", np.array([600.0, 700.0]), np.array([np.nan, np.inf]))
    add_run(sweep, "s4", {"lr": 0.1, "gamma": 0.99, "seed": 4})
    sweep.execute(
        "INSERT INTO episodes (run_id, seq, episode, profit) VALUES ('s4', 1, 1, 5.0)"
    )  # no env_step
    result = compare(sweep, x="env_step", stat="mean", points=300)
    a = result.groups[0]
    assert [r.run_id for r in a.runs] == ["s1", "s2", "s3"] and len(a.group.runs) == 4
    np.testing.assert_allclose(a.center, 2 * a.x + 2, rtol=1e-9)
    assert compare(sweep, x="episode").groups[0].summary["n"] == 4


def test_the_iqm_and_final_scores(sweep: duckdb.DuckDBPyConnection) -> None:
    result = compare(sweep, x="env_step", final_window=0.0, gamma=0.0)
    b = result.groups[1]
    np.testing.assert_allclose(b.scores, [-1500 + 10, -1500 + 20])  # each run's value at x = 1500
    row = result.final().to_pylist()[1]
    assert row["iqm"] == pytest.approx(-1485) and row["mean"] == pytest.approx(-1485)
    assert row["iqm_low"] <= row["iqm"] <= row["iqm_high"]
    assert row["optimality_gap"] == pytest.approx(1485)  # gamma 0: how far below 0
    pairs = result.improvement().to_pylist()
    assert pairs == [{"x": "lr=0.1", "y": "lr=0.2", "probability": 1.0, "low": 1.0, "high": 1.0}]
    runs = result.run_scores().to_pylist()
    assert [r["run_id"] for r in runs] == ["s1", "s2", "s3", "t1", "t2"] and runs[3]["x_max"] == 1950.0


def test_each_run_may_have_its_own_objective(con: duckdb.DuckDBPyConnection) -> None:
    for i, objective in enumerate(("episode_return", "episode_return", "profit")):
        add_run(con, f"r{i}", {"algo": "ppo", "seed": i})
        con.execute("UPDATE runs SET objective = ? WHERE run_id = ?", [objective, f"r{i}"])
        con.execute(
            "INSERT INTO episodes (run_id, seq, episode, profit, episode_return) "
            "SELECT ?, e, e, -1000, 10 * e FROM range(1, 11) t(e)",
            [f"r{i}"],
        )
    result = compare(con, final_window=0)
    (group,) = result.groups
    assert group.metric == "episode_return/profit"
    np.testing.assert_allclose(group.scores, [100.0, 100.0, -1000.0])
    assert compare(con, metric="profit").groups[0].metric == "profit"


def test_clear_errors(sweep: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(ValueError, match="x must be one of episode, env_step"):
        compare(sweep, x="wall_time")
    with pytest.raises(ValueError, match="no episodes column 'nope'"):
        compare(sweep, metric="nope")
    with pytest.raises(ValueError, match="unknown run 'zzz'"):
        compare(sweep, run_ids=["s1", "zzz"])
    sweep.execute('ALTER TABLE episodes DROP COLUMN "env_step"')
    with pytest.raises(ValueError, match="no episodes column 'env_step'"):
        compare(sweep, x="env_step")


def _run(run_id: str, hp: dict, tags: tuple[str, ...] = ()) -> Run:
    return Run(run_id, run_id, "finished", hp, tags)


def test_groups_leave_out_the_seed_and_say_what_differs() -> None:
    assert all(is_seed_key(k) for k in ("seed", "random_seed", "SEED", "env_seed", "torchSeed"))
    assert not any(is_seed_key(k) for k in ("seeds_per_task", "lr", "seed_count"))
    runs = [
        _run("a", {"lr": 0.001, "gamma": 0.99, "seed": 1}),
        _run("b", {"lr": 1e-3, "gamma": 0.99, "seed": 2}),
        _run("c", {"lr": 0.01, "gamma": 0.99, "SEED": 3}),
        _run("d", {"lr": 0.0001, "gamma": 0.99, "seed": 4}),
    ]
    groups = group_runs(runs)
    assert [(g.label, [r.run_id for r in g.runs]) for g in groups] == [
        ("lr=0.0001", ["d"]),
        ("lr=0.001", ["a", "b"]),
        ("lr=0.01", ["c"]),
    ]
    assert [g.label for g in group_runs(runs, "gamma")] == ["gamma=0.99"]
    assert [g.label for g in group_runs(runs[:2])] == ["gamma=0.99, lr=0.001"]
    assert [g.label for g in group_runs([_run("e", {"seed": 1})])] == ["all runs"]


def test_groups_by_tag_and_tasks() -> None:
    runs = [
        _run("a", {"env": "CartPole", "seed": 1}, ("ppo",)),
        _run("b", {"env": "Acrobot", "seed": 1}, ("ppo",)),
        _run("c", {"env": "CartPole", "seed": 2}, ("ppo",)),
        _run("d", {"env": "CartPole", "seed": 1}, ("dqn", "baseline")),
        _run("e", {"env": "CartPole", "seed": 1}),
    ]
    assert [(g.label, len(g.runs)) for g in group_runs(runs, "tag")] == [
        ("baseline+dqn", 1),
        ("ppo", 3),
        ("untagged", 1),
    ]
    (group,) = group_runs(runs[:3], task="env")
    assert group.label == "all runs" and group.tasks == ["Acrobot", "CartPole", "CartPole"]

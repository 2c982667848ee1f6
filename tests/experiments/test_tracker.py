"""ExperimentTracker against a real collector: runs, comparisons, leaderboard, exports."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import CollectorProcess
from traindash.producer import ExperimentTracker
from traindash.producer.experiment_tracker import ExperimentError


@pytest.fixture
def trackers() -> Iterator[list[ExperimentTracker]]:
    made: list[ExperimentTracker] = []
    yield made
    for tracker in made:
        tracker.close()


@pytest.fixture
def make(
    collector: CollectorProcess, tmp_path: Path, trackers: list[ExperimentTracker]
) -> Callable[..., ExperimentTracker]:
    def new(**kw: object) -> ExperimentTracker:
        tracker = ExperimentTracker(
            str(tmp_path / "experiments"),
            config=collector.producer_config(close_timeout=2.0),
            db=collector.db,
            **kw,
        )
        trackers.append(tracker)
        return tracker

    return new


def _run(tracker: ExperimentTracker, name: str, lr: float, scale: float, episodes: int = 20) -> str:
    exp_id = tracker.create_experiment(
        name, {"learning_rate": lr, "gamma": 0.99}, description=f"{name} run", tags=["dqn", name]
    )
    for ep in range(episodes):
        tracker.log_result(
            exp_id,
            episode=ep,
            profit=scale * ep,
            sharpe=ep / 10 * scale,
            win_rate=0.5,
            drawdown=10.0 / scale,
            custom_score=scale,
        )
    return exp_id


def test_experiment_is_a_run_with_its_metadata(
    collector: CollectorProcess, tmp_path: Path, make: Callable[..., ExperimentTracker]
) -> None:
    tracker = make()
    exp_id = _run(tracker, "baseline", 0.001, 1.0)
    tracker.complete_experiment(exp_id, final_metrics={"total_episodes": 20, "best_profit": 19.0})
    run = collector.query(f"SELECT * FROM runs WHERE run_id = '{exp_id}'").to_pylist()[0]
    assert run["experiment"] == "baseline" and run["status"] == "finished"
    assert json.loads(run["hyperparameters"]) == {"learning_rate": 0.001, "gamma": 0.99}
    assert run["tags"] == ["dqn", "baseline"] and run["description"] == "baseline run"
    final = json.loads(run["final_metrics"])
    assert final["best_profit"] == 19.0 and final["total_episodes"] == 20
    assert collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{exp_id}'") == 20
    snapshot = json.loads((tmp_path / "experiments" / f"{exp_id}.json").read_text())
    assert len(snapshot["episodes"]) == 20 and snapshot["run"]["status"] == "finished"
    with pytest.raises(ExperimentError):
        tracker.log_result(exp_id, episode=21, profit=1.0)


def test_compare_leaderboard_and_exports(
    collector: CollectorProcess, tmp_path: Path, make: Callable[..., ExperimentTracker]
) -> None:
    tracker = make()
    a = _run(tracker, "slow", 0.0001, 1.0)
    b = _run(tracker, "fast", 0.001, 3.0)
    c = _run(tracker, "nan", 0.01, 2.0, episodes=5)
    tracker.log_result(c, episode=5, profit=math.nan, sharpe=math.inf, drawdown=5.0)
    # open experiments are flushed before comparing: no wait needed
    comparison = tracker.compare_experiments([a, b, c])
    assert comparison["metrics"]["profit"][a]["best"] == 19.0
    assert comparison["metrics"]["profit"][b]["best"] == 57.0
    assert comparison["metrics"]["profit"][c]["best"] == 8.0  # NaN is not a best
    assert comparison["metrics"]["drawdown"][b]["best"] == pytest.approx(10 / 3)  # lower is better
    assert comparison["best"]["profit"] == b and comparison["best"]["drawdown"] == b
    assert comparison["hyperparameters"]["learning_rate"] == {a: 0.0001, b: 0.001, c: 0.01}
    assert comparison["experiments"][b]["episodes"] == 20
    assert "custom_score" in comparison["metrics"]
    only = tracker.compare_experiments([a, b], metrics=["profit"])
    assert list(only["metrics"]) == ["profit"]
    with pytest.raises(ValueError, match="unknown metric"):
        tracker.compare_experiments([a], metrics=["nope; DROP TABLE runs"])
    with pytest.raises(ExperimentError):
        tracker.compare_experiments([a, "no-such-run"])

    board = tracker.get_leaderboard(metric="profit", top_n=2)
    assert [r["exp_id"] for r in board] == [b, a]  # the NaN episode of c ranks nowhere
    assert board[0]["rank"] == 1 and board[0]["profit"] == 57.0 and board[0]["best_episode"] == 19
    assert board[0]["hyperparameters"]["learning_rate"] == 0.001
    assert [r["exp_id"] for r in tracker.get_leaderboard("drawdown")][0] == b

    path_json = tracker.export_comparison([a, b], format="json")
    assert path_json.name.startswith("comparison_") and path_json.parent == tmp_path / "experiments"
    assert json.loads(path_json.read_text())["best"]["profit"] == b
    path_csv = tracker.export_comparison([a, b], format="csv")
    with path_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["exp_id"] for r in rows] == [a, b]
    assert float(rows[1]["profit_best"]) == 57.0 and float(rows[0]["hp_learning_rate"]) == 0.0001


def test_reads_the_file_when_no_collector_runs(
    collector: CollectorProcess, tmp_path: Path, make: Callable[..., ExperimentTracker]
) -> None:
    tracker = make()
    exp_id = _run(tracker, "offline", 0.001, 1.0)
    tracker.complete_experiment(exp_id)
    assert collector.stop() == 0
    reader = make(timeout=0.5)
    assert reader.get_leaderboard()[0]["exp_id"] == exp_id
    assert reader.compare_experiments([exp_id])["metrics"]["profit"][exp_id]["final"] == 19.0


def test_resume_in_the_same_directory(
    collector: CollectorProcess, make: Callable[..., ExperimentTracker]
) -> None:
    first = make()
    exp_id = _run(first, "resumed", 0.001, 1.0, episodes=5)
    first.logger(exp_id).close(status="paused")
    second = make()
    second.log_result(exp_id, episode=5, profit=100.0)
    second.complete_experiment(exp_id)
    assert collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{exp_id}'") == 6
    assert collector.scalar(f"SELECT status FROM runs WHERE run_id = '{exp_id}'") == "finished"


def test_archive_and_delete(
    collector: CollectorProcess, tmp_path: Path, make: Callable[..., ExperimentTracker]
) -> None:
    tracker = make()
    exp_id = _run(tracker, "old", 0.001, 1.0, episodes=3)
    tracker.complete_experiment(exp_id)
    assert tracker.archive_old_experiments(days=1) == []  # ended just now
    path = tracker.archive_experiment(exp_id)
    assert path == tmp_path / "experiments" / "archive" / f"{exp_id}.json"
    assert len(json.loads(path.read_text())["episodes"]) == 3
    assert collector.scalar(f"SELECT status FROM runs WHERE run_id = '{exp_id}'") == "archived"
    assert exp_id not in [r["exp_id"] for r in tracker.get_leaderboard()]
    tracker.delete_experiment(exp_id)
    assert collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{exp_id}'") == 0
    # the run stays as a tombstone so that a late re-send of its records is not stored again
    assert collector.scalar(f"SELECT status FROM runs WHERE run_id = '{exp_id}'") == "deleted"
    assert exp_id not in [r["exp_id"] for r in tracker.list_experiments()]

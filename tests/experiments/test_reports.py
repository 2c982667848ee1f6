"""The reports agree: the `leaderboard` view, `traindash leaderboard` and the tracker show the
same runs in the same order with the same values; archived, deleted and service runs in none."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.harness import CollectorProcess, run_cli
from traindash import reports
from traindash.producer import ExperimentTracker, MetricsLogger


def _experiment(tracker: ExperimentTracker, name: str, profits: list[float]) -> str:
    exp_id = tracker.create_experiment(name, {"scale": len(profits)})
    for ep, profit in enumerate(profits):
        tracker.log_result(exp_id, episode=ep, profit=profit, sharpe=1.0)
    tracker.complete_experiment(exp_id)
    return exp_id


def test_view_cli_and_tracker_show_the_same_leaderboard(collector: CollectorProcess, tmp_path: Path) -> None:
    with ExperimentTracker(
        str(tmp_path / "exp"), config=collector.producer_config(close_timeout=5.0), db=collector.db
    ) as tracker:
        # NaN is data, never a best: a max over it must not put a first.
        a = _experiment(tracker, "a", [1.0, 5.0, math.nan])
        b = _experiment(tracker, "b", [2.0, 9.0])
        archived = _experiment(tracker, "archived", [100.0])
        deleted = _experiment(tracker, "deleted", [200.0])
        only_nan = _experiment(tracker, "only-nan", [math.nan])
        tracker.archive_experiment(archived)
        tracker.delete_experiment(deleted)
        service = MetricsLogger(
            "alerts", output_dir=str(tmp_path), role="alerts", config=collector.producer_config()
        )
        service.log_episode(1, 1000.0)
        service.close()

        view = collector.query(
            "SELECT run_id, best_profit FROM leaderboard WHERE best_profit IS NOT NULL "
            "ORDER BY best_profit DESC, run_id"
        ).to_pylist()
        board = tracker.get_leaderboard("profit", top_n=100)
        shown = {r["exp_id"] for r in tracker.list_experiments()}
    cli = run_cli("leaderboard", "--top", "100", "--format", "json", env=collector.env)
    assert cli.returncode == 0, cli.stderr
    cli_rows = [json.loads(line) for line in cli.stdout.splitlines()]

    expected = [(b, 9.0), (a, 5.0)]
    assert [(r["run_id"], r["best_profit"]) for r in view] == expected
    assert [(r["exp_id"], r["value"]) for r in board] == expected
    assert [(r["exp_id"], r["best_profit"]) for r in cli_rows] == expected
    # The view lists every run the leaderboard may show, the run lists the same ones.
    all_in_view = {r["run_id"] for r in collector.query("SELECT run_id FROM leaderboard").to_pylist()}
    assert all_in_view == {a, b, only_nan} == shown
    assert not {archived, deleted, service.run_id} & (all_in_view | shown)
    ui_table = {r["run_id"] for r in collector.query(reports.trainer_table_sql()).to_pylist()}
    assert ui_table == shown


def test_sql_of_the_reports_is_written_once() -> None:
    assert reports.trainer_runs("r") == "coalesce(r.role, 'trainer') = 'trainer'"
    assert "'archived', 'deleted'" in reports.shown_runs()
    assert reports.shown_runs("r") in reports.LEADERBOARD_VIEW
    assert reports.LEADERBOARD_FROM in reports.leaderboard_sql("profit")
    assert reports.leaderboard_view_sql("max_drawdown").endswith(
        "max_drawdown ASC NULLS LAST, run_id LIMIT 50"
    )
    with pytest.raises(ValueError, match="unknown leaderboard metric"):
        reports.leaderboard_view_sql("profit; DROP TABLE runs")
    with pytest.raises(ValueError, match="table must be one of"):
        reports.export_sql("rejects")

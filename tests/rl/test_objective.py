"""Episodes with RL fields and a run's objective: columns, best episode, leaderboard, alerts."""

from __future__ import annotations

import math

import pytest

from tests.harness import CollectorProcess
from traindash.alerts.config import Thresholds
from traindash.alerts.rules import RuleEngine
from traindash.producer import MetricsLogger

RETURNS = [10.0, 30.0, 20.0, 25.0]


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_rl_episodes_have_typed_columns_and_rank_by_return(
    collector: CollectorProcess, tmp_path, sender: str
) -> None:
    lg = MetricsLogger(
        "rl",
        output_dir=str(tmp_path),
        config=collector.producer_config(),
        sender=sender,
        objective="episode_return",
    )
    for i, ret in enumerate(RETURNS):
        lg.log_episode(
            i,
            episode_return=ret,
            episode_length=100 + i,
            env_step=1000 * (i + 1),
            terminated=i % 2 == 0,
            truncated=i % 2 == 1,
            env_index=i % 2,
            worker="w0",
        )
    lg.log_episode(4, 5.0)  # the guide's call still works in the same run: RL fields NULL
    assert lg.get_best_episode()["episode_return"] == 30.0
    assert lg.get_best_episode("profit")["profit"] == 5.0
    assert lg.flush(timeout=30)
    lg.close()
    rows = collector.query(
        "SELECT episode, profit, episode_return, episode_length, env_step, terminated, truncated, "
        "env_index, worker FROM episodes ORDER BY episode"
    ).to_pylist()
    assert rows[1] == {
        "episode": 1,
        "profit": None,
        "episode_return": 30.0,
        "episode_length": 101,
        "env_step": 2000,
        "terminated": False,
        "truncated": True,
        "env_index": 1,
        "worker": "w0",
    }
    assert rows[4]["profit"] == 5.0 and rows[4]["episode_return"] is None and rows[4]["terminated"] is None
    types = dict(
        collector.query(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'episodes'"
        )
        .to_pylist()[i]
        .values()
        for i in range(16)
    )
    assert types["terminated"] == "BOOLEAN" and types["env_step"] == "BIGINT"
    board = collector.query("SELECT objective, best_objective, env_steps FROM leaderboard").to_pylist()
    assert board == [{"objective": "episode_return", "best_objective": 30.0, "env_steps": 4000}]


def test_guide_runs_keep_profit_as_objective(collector: CollectorProcess, tmp_path) -> None:
    lg = MetricsLogger("trading", output_dir=str(tmp_path), config=collector.producer_config())
    for i, p in enumerate([1.0, 4.0, 2.0]):
        lg.log_episode(i, p, 0.5)
    assert lg.get_best_episode()["profit"] == 4.0
    lg.close()
    board = collector.query("SELECT objective, best_objective, best_profit FROM leaderboard").to_pylist()
    assert board == [{"objective": "profit", "best_objective": 4.0, "best_profit": 4.0}]


def test_objective_must_be_a_column_name(tmp_path) -> None:
    with pytest.raises(ValueError, match="objective"):
        MetricsLogger("x", output_dir=str(tmp_path), objective="drop table; --")


def test_new_best_and_no_improvement_follow_the_objective() -> None:
    e = RuleEngine(
        Thresholds(no_improvement_episodes=3, min_profit_warning=-math.inf),
        new_best_min_episodes=1,
        cooldown=0.0,
    )
    e.on_run("r", {"name": "r", "objective": "episode_return"}, 0.0)
    out = []
    for i, ret in enumerate([1.0, 2.0, 1.5, 5.0]):
        # profit (absent from RL rows) must not drive the rules
        out += e.on_episode("r", {"seq": i, "episode": i, "episode_return": ret}, float(i))
    best = [a for a in out if a.rule == "new_best"]
    assert [a.data["episode_return"] for a in best] == [2.0, 5.0]
    assert "New best episode return 5" in best[-1].message
    for i in range(4, 8):
        out += e.on_episode("r", {"seq": i, "episode": i, "episode_return": 0.0}, float(i))
    stale = [a for a in out if a.rule == "no_improvement"]
    assert len(stale) == 1 and "best episode return 5" in stale[0].message

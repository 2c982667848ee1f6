"""examples/train_with_monitoring.py: a real DQN run streaming into a real collector."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, CollectorProcess

SCRIPT = str(ROOT / "examples" / "train_with_monitoring.py")


def _train(c: CollectorProcess, cwd: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, SCRIPT, *args], cwd=cwd, env=c.env, capture_output=True, text=True, timeout=100
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_dqn_trading_run_with_alerts(collector: CollectorProcess, tmp_path: Path) -> None:
    out = _train(collector, tmp_path, "--episodes", "20", "--no-dashboard", "--name", "example_dqn")
    run = collector.query("SELECT * FROM runs WHERE experiment = 'example_dqn'").to_pylist()[0]
    assert run["status"] == "finished" and run_id_in(out, run["run_id"])
    hp = json.loads(run["hyperparameters"])
    assert hp["gamma"] == 0.97 and hp["env"] == "trading" and "dqn" in run["tags"]
    assert json.loads(run["final_metrics"])["total_episodes"] == 20
    where = f"WHERE run_id = '{run['run_id']}'"
    eps = collector.query(f"SELECT * FROM episodes {where} ORDER BY episode").to_pylist()
    assert [e["episode"] for e in eps] == list(range(1, 21))
    assert eps[0]["epsilon"] == 1.0 and eps[-1]["epsilon"] < eps[0]["epsilon"]  # epsilon-greedy decay
    assert eps[-1]["learning_rate"] < eps[0]["learning_rate"]  # the schedule
    assert all(e["num_trades"] >= 0 and e["drawdown"] >= 0 and e["steps"] == 200 for e in eps)
    models = collector.query(f"SELECT * FROM model_metrics {where} ORDER BY step").to_pylist()
    assert len(models) >= 19 and all(m["loss"] >= 0 and len(m["q_values"]) == 32 for m in models)
    assert all(m["grad_std"] > 0 for m in models)
    # the alert system ran beside it and recorded the training-complete alert
    assert (
        collector.scalar(
            f"SELECT count(*) FROM alerts WHERE rule = 'training_complete' AND run_id = '{run['run_id']}'"
        )
        == 1
    )
    assert (tmp_path / "experiments" / f"{run['run_id']}.json").exists()


def run_id_in(out: str, run_id: str) -> bool:
    return f"experiment {run_id}:" in out


def test_dqn_on_cartpole(collector: CollectorProcess, tmp_path: Path) -> None:
    pytest.importorskip("gymnasium")
    _train(
        collector,
        tmp_path,
        "--episodes",
        "5",
        "--env",
        "cartpole",
        "--no-dashboard",
        "--no-alerts",
        "--name",
        "example_cartpole",
    )
    rows = collector.query(
        "SELECT e.profit, e.num_trades FROM episodes e JOIN runs r USING (run_id) "
        "WHERE r.experiment = 'example_cartpole'"
    ).to_pylist()
    assert len(rows) == 5 and all(r["profit"] >= 8 for r in rows)  # CartPole lasts >= 8 steps

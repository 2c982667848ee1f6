"""The pure rules: each fires once, with the right level and text, and clears with a recovery."""

from __future__ import annotations

import math

import pytest

from traindash.alerts.config import CustomRuleSpec, Thresholds
from traindash.alerts.rules import RuleEngine, Throttle, health_alerts, nonfinite

T = Thresholds(no_improvement_episodes=5, critical_loss_threshold=100.0, min_profit_warning=-50.0)


def engine(**kw) -> RuleEngine:
    return RuleEngine(T, cooldown=kw.pop("cooldown", 300.0), **kw)


def ep(i: int, profit: float = 1.0, **kw) -> dict:
    return {
        "seq": i,
        "ts": 0.0,
        "episode": i,
        "profit": profit,
        "sharpe": 0.5,
        "win_rate": 0.5,
        "drawdown": 10.0,
        "num_trades": 3,
        "epsilon": 0.1,
        "learning_rate": 1e-3,
        **kw,
    }


def model(loss: float) -> dict:
    return {"seq": 1, "ts": 0.0, "step": 1, "episode": 1, "loss": loss, "q_values": [0.1, 0.2]}


def rules(alerts) -> list[str]:
    return [a.rule for a in alerts]


def test_ten_nan_losses_make_one_critical_alert_then_a_recovery():
    e, out = engine(), []
    for i in range(10):
        out += e.on_model("r1", model(math.nan), now=float(i))
    assert rules(out) == ["nan_metric"]
    assert out[0].level == "critical" and "loss" in out[0].message and out[0].run_id == "r1"
    out = e.on_model("r1", model(1.0), now=11.0)
    assert rules(out) == ["nan_metric.recovered"]
    assert out[0].level == "info" and out[0].title == "Recovered: NaN/Inf detected"


def test_inf_in_an_episode_metric_and_in_q_values():
    assert nonfinite(ep(1, sharpe=math.inf)) == ["sharpe"]
    assert nonfinite({"loss": 1.0, "q_values": [1.0, math.nan]}) == ["q_values"]
    out = engine().on_episode("r1", ep(1, custom_score=-math.inf), now=0.0)
    assert rules(out) == ["nan_metric"] and "custom_score" in out[0].message


def test_loss_above_the_critical_threshold():
    e = engine()
    out = e.on_model("r1", model(150.0), 0.0) + e.on_model("r1", model(200.0), 1.0)
    assert rules(out) == ["loss_critical"]
    assert out[0].level == "critical"
    assert out[0].message == "Loss 150 is above the critical threshold 100 for run r1"
    assert rules(e.on_model("r1", model(5.0), 2.0)) == ["loss_critical.recovered"]


def test_profit_below_the_warning_threshold():
    e = engine()
    out = e.on_episode("r1", ep(1, -60.0), 0.0) + e.on_episode("r1", ep(2, -70.0), 1.0)
    assert rules(out) == ["profit_low"]
    assert out[0].level == "warning" and "below the warning threshold -50" in out[0].message
    assert rules(e.on_episode("r1", ep(3, 0.0), 2.0)) == ["profit_low.recovered"]


def test_no_improvement_for_n_episodes_and_new_best():
    e = engine(new_best_min_episodes=3)
    out = []
    for i in range(1, 4):
        out += e.on_episode("r1", ep(i, float(i)), float(i))
    assert out == []
    for i in range(4, 9):
        out += e.on_episode("r1", ep(i, 0.0), float(i))
    assert rules(out) == ["no_improvement"]
    assert out[0].level == "warning" and out[0].title == "Slow Learning"
    assert "No improvement in 5 episodes" in out[0].message
    out = e.on_episode("r1", ep(9, 10.0), 9.0)
    assert sorted(rules(out)) == ["new_best", "no_improvement.recovered"]
    best = next(a for a in out if a.rule == "new_best")
    assert best.level == "info" and "New best profit 10" in best.message


def test_cooldown_per_run_and_rule_holds_across_flapping():
    e = engine(cooldown=60.0)
    assert rules(e.on_model("r1", model(math.nan), 0.0)) == ["nan_metric"]
    e.on_model("r1", model(1.0), 1.0)
    assert e.on_model("r1", model(math.nan), 2.0) == []  # inside the cooldown
    assert rules(e.on_model("r2", model(math.nan), 2.0)) == ["nan_metric"]  # other run
    assert rules(e.on_model("r1", model(math.nan), 70.0)) == ["nan_metric"]  # after it


def test_end_of_training():
    e = engine()
    e.on_run("r1", {"name": "ppo-1", "role": "trainer"}, 0.0)
    out = e.on_end(
        "r1", {"status": "finished", "final_metrics": {"total_episodes": 1000, "best_profit": 5000.0}}, 1.0
    )
    assert rules(out) == ["training_complete"] and out[0].level == "info"
    assert out[0].message == ("Training complete for run ppo-1 (r1): total episodes 1000, best profit 5,000")
    out = e.on_end("r2", {"status": "crashed", "final_metrics": {}}, 1.0)
    assert rules(out) == ["training_crashed"] and out[0].level == "critical"


def test_alerts_runs_are_ignored():
    e = engine()
    e.on_run("a1", {"role": "alerts"}, 0.0)
    assert e.on_end("a1", {"status": "finished"}, 1.0) == []
    assert e.on_status("a1", "stalled", 2.0) == []


def test_stalled_lost_and_recovered():
    e = engine()
    e.on_run("r1", {"name": "r1"}, 0.0)
    out = e.on_status("r1", "stalled", 1.0)
    assert rules(out) == ["trainer_stalled"] and out[0].level == "warning"
    out = e.on_status("r1", "lost", 2.0)
    assert rules(out) == ["trainer_lost"] and out[0].level == "critical"
    out = e.on_status("r1", "running", 3.0)
    assert rules(out) == ["trainer_recovered"] and out[0].level == "info"
    assert e.on_status("r1", "finished", 4.0) == []


def test_custom_rule_for_n_episodes():
    spec = CustomRuleSpec(
        name="deep_dd",
        condition="drawdown > 300 and win_rate < 0.4",
        level="critical",
        title="Deep drawdown",
        for_episodes=3,
    )
    e = RuleEngine(Thresholds(no_improvement_episodes=0), rules=[spec])
    out = []
    for i in range(1, 3):
        out += e.on_episode("r1", ep(i, drawdown=400.0, win_rate=0.3), float(i))
    out += e.on_episode("r1", ep(3, drawdown=400.0, win_rate=0.5), 3.0)  # breaks the streak
    assert out == []
    for i in range(4, 8):
        out += e.on_episode("r1", ep(i, drawdown=400.0, win_rate=0.3), float(i))
    assert rules(out) == ["custom:deep_dd"]
    assert out[0].level == "critical" and out[0].title == "Deep drawdown"
    assert "drawdown=400" in out[0].message and "for 3 episodes" in out[0].message
    assert rules(e.on_episode("r1", ep(9, drawdown=1.0), 9.0)) == ["custom:deep_dd.recovered"]


def test_custom_rule_sees_model_metrics():
    spec = CustomRuleSpec(name="hot", condition="loss * 2 > 50", title="Hot loss")
    e = engine(rules=[spec])
    e.on_model("r1", model(30.0), 0.0)
    assert rules(e.on_episode("r1", ep(1), 1.0)) == ["custom:hot"]


def test_health_alerts_for_check_training_health():
    history = [{"profit": 100.0}] + [{"profit": 1.0}] * 5
    out = health_alerts({"profit": -60.0, "loss": math.nan}, history, T)
    assert sorted(rules(out)) == ["nan_metric", "no_improvement", "profit_low"]
    assert health_alerts({"profit": 1.0, "loss": 1.0}, [{"profit": 1.0}] * 3, T) == []


def test_throttle():
    t = Throttle(10.0)
    assert t.allow("k", 0.0) and not t.allow("k", 9.9) and t.allow("k", 10.0)


@pytest.mark.parametrize("preset,n", [("conservative", 50), ("MODERATE", 100), ("aggressive", 200)])
def test_threshold_presets_by_name(preset, n):
    assert Thresholds.from_value(preset).no_improvement_episodes == n


def test_an_infinite_loss_is_the_nan_rule_not_the_loss_rule():
    assert rules(engine().on_model("r1", model(math.inf), 0.0)) == ["nan_metric"]
    assert rules(health_alerts({"loss": math.inf}, [], T)) == ["nan_metric"]

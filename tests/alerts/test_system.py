"""The guide's AlertSystem snippets, run as written, plus what it records in the alerts table."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from nexlify.monitoring.alert_system import AlertSystem, AlertThresholds
from tests.alerts.servers import MailServer, SlackStub
from tests.harness import CollectorProcess, free_endpoints, wait_for
from traindash.alerts import AlertSystem as ExportedAlertSystem


def alert_rows(collector: CollectorProcess, where: str = "true") -> list[dict]:
    return collector.query(
        f"SELECT level, rule, title, message, data, channels, run_id FROM alerts WHERE {where} ORDER BY seq"
    ).to_pylist()


def test_presets_have_the_guide_numbers():
    assert AlertThresholds.CONSERVATIVE == {
        "no_improvement_episodes": 50,
        "critical_loss_threshold": 500.0,
        "min_profit_warning": -200.0,
    }
    assert AlertThresholds.MODERATE == {
        "no_improvement_episodes": 100,
        "critical_loss_threshold": 1000.0,
        "min_profit_warning": -500.0,
    }
    assert AlertThresholds.AGGRESSIVE == {
        "no_improvement_episodes": 200,
        "critical_loss_threshold": 2000.0,
        "min_profit_warning": -1000.0,
    }
    assert ExportedAlertSystem is AlertSystem


def test_guide_usage_snippet_with_no_internet(td_env: CollectorProcess):
    """The guide's config points at smtp.gmail.com and hooks.slack.com; there is no internet
    here, so delivery fails fast, is recorded, and nothing raises."""
    td_env.start()
    latest = {"episode": 120, "profit": -800.0, "loss": float("nan")}
    recent_episodes = [{"episode": i, "profit": 10.0 if i == 0 else 1.0} for i in range(120)]
    start = time.monotonic()
    # --- the guide, as written ---
    config = {
        "enable_alerts": True,
        "email": {
            "enabled": True,
            "smtp_host": "smtp.gmail.com",
            "smtp_port": 587,
            "username": "your@email.com",
            "password": "your_password",
            "to_addrs": ["recipient@email.com"],
        },
        "slack": {"enabled": True, "webhook_url": "https://hooks.slack.com/..."},
        "thresholds": AlertThresholds.MODERATE,
    }

    alert_system = AlertSystem(config)

    # Send alert
    alert_system.send_alert(level="warning", title="Slow Learning", message="No improvement in 100 episodes")

    # Check training health
    alert_system.check_training_health(latest_episode=latest, recent_history=recent_episodes)

    # Training complete notification
    alert_system.send_training_complete(
        total_episodes=1000, best_profit=5000.0, best_sharpe=2.5, training_time=3600.0
    )
    # --- end of the guide's snippet ---
    assert time.monotonic() - start < 1.0, "the calls must not wait for the network"
    shown = repr(alert_system.settings) + repr(alert_system)
    assert "your_password" not in shown and "hooks.slack.com" not in shown
    assert alert_system.flush(timeout=60)
    history = list(alert_system.alert_history)
    assert [h["rule"] for h in history] == [
        "slow_learning",
        "nan_metric",
        "profit_low",
        "no_improvement",
        "training_complete",
    ]
    for h in history:
        assert h["channels"] == [] and set(h["errors"]) == {"email", "slack"}
    rows = wait_for(lambda: len(r := alert_rows(td_env)) == 5 and r, 30, "5 recorded alerts")
    assert [(r["level"], r["title"]) for r in rows] == [
        ("warning", "Slow Learning"),
        ("critical", "NaN/Inf detected"),
        ("warning", "Low profit"),
        ("warning", "Slow Learning"),
        ("info", "Training Complete"),
    ]
    assert all(r["channels"] == [] for r in rows)
    assert "delivery_errors" in json.loads(rows[0]["data"])
    assert rows[4]["message"] == (
        "Training finished after 1000 episodes in 1h 00m 00s: best profit 5,000.00, best Sharpe 2.500"
    )
    alert_system.close()
    assert td_env.scalar("SELECT count(*) FROM runs WHERE role = 'alerts'") == 1
    assert td_env.scalar("SELECT count(*) FROM leaderboard") == 0


def no_collector(monkeypatch) -> None:
    """Point the endpoints at free ports, so a collector someone else runs is never written to."""
    e = free_endpoints()
    for name, endpoint in (("INGEST", e.ingest), ("ROWS", e.rows), ("QUERY", e.query)):
        monkeypatch.setenv(f"TRAINDASH_{name}", endpoint)


def test_guide_custom_thresholds_and_config_file_snippets(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    no_collector(monkeypatch)
    custom_thresholds = {
        "no_improvement_episodes": 75,
        "critical_loss_threshold": 750.0,
        "min_profit_warning": -300.0,
    }

    alert_system = AlertSystem({"enable_alerts": True, "thresholds": custom_thresholds})
    assert alert_system.thresholds == custom_thresholds
    alert_system.close()

    Path("config").mkdir()
    Path("config/neural_config.json").write_text(
        json.dumps(
            {
                "training_dashboard": {
                    "alerts": {
                        "enabled": True,
                        "email": {
                            "enabled": False,
                            "smtp_host": "smtp.gmail.com",
                            "smtp_port": 587,
                            "username": "your@email.com",
                            "password": "your_password",
                        },
                        "slack": {"enabled": False, "webhook_url": "https://hooks.slack.com/..."},
                        "thresholds": {
                            "no_improvement_episodes": 100,
                            "critical_loss_threshold": 1000.0,
                            "min_profit_warning": -500.0,
                        },
                    }
                }
            }
        )
    )
    with open("config/neural_config.json") as f:
        config = json.load(f)

    dashboard_config = config["training_dashboard"]
    alert_config = dashboard_config["alerts"]

    # Use config
    alert_system = AlertSystem(alert_config)
    assert alert_system.thresholds == AlertThresholds.MODERATE and alert_system.channels == []
    assert alert_system.send_alert("info", "Hello", "no channels: accepted, recorded if possible")
    alert_system.close(timeout=5)


def test_disabled_alerts_send_nothing(monkeypatch):
    no_collector(monkeypatch)
    system = AlertSystem({"enable_alerts": False})
    assert system.send_alert("critical", "x", "y") is False
    system.check_training_health({"loss": float("nan")}, [])
    assert system.flush(1) and list(system.alert_history) == []
    system.close()


def test_delivery_throttling_force_and_the_alerts_table(
    td_env: CollectorProcess, smtp: MailServer, slack: SlackStub, monkeypatch
):
    td_env.start()
    monkeypatch.setenv("TRAINDASH_SLACK_WEBHOOK_URL", slack.url)
    system = AlertSystem(
        {
            "enable_alerts": True,
            "email": smtp.email_config(),
            "slack": {"enabled": True},
            "run_id": "trainer-run-1",
            "thresholds": "conservative",
        }
    )
    try:
        assert system.send_alert("warning", "High loss", "loss 600", data={"loss": 600.0})
        assert system.send_alert("warning", "High loss", "loss 700") is False  # throttled
        assert system.send_alert("warning", "High loss", "loss 800", force=True)
        system.send_new_best_model(episode=42, profit=1234.5, sharpe=1.5, model_path="best.pt")
        system.send_alert("bogus", "Odd level", "sent as warning")
        assert system.flush(30)
    finally:
        system.close()
    sent_slack = slack.texts()
    sent_mail = [m.message["Subject"] for m in smtp.mails]
    assert sent_slack == [
        "[WARNING] High loss: loss 600",
        "[WARNING] High loss: loss 800",
        "[INFO] New Best Model: Episode 42, profit 1,234.50, Sharpe 1.500, saved to best.pt",
        "[WARNING] Odd level: sent as warning",
    ]
    assert sent_mail == [
        "[traindash WARNING] High loss",
        "[traindash WARNING] High loss",
        "[traindash INFO] New Best Model",
        "[traindash WARNING] Odd level",
    ]
    rows = wait_for(lambda: len(r := alert_rows(td_env)) == 4 and r, 30, "4 recorded alerts")
    assert [(r["level"], r["rule"], r["message"], r["channels"], r["run_id"]) for r in rows] == [
        ("warning", "high_loss", "loss 600", ["email", "slack"], "trainer-run-1"),
        ("warning", "high_loss", "loss 800", ["email", "slack"], "trainer-run-1"),
        ("info", "new_best", sent_slack[2].split(": ", 1)[1], ["email", "slack"], "trainer-run-1"),
        ("warning", "odd_level", "sent as warning", ["email", "slack"], "trainer-run-1"),
    ]
    assert json.loads(rows[0]["data"]) == {"loss": 600.0}


@pytest.mark.parametrize("preset", ["conservative", "moderate", "aggressive"])
def test_preset_names_in_config(preset, monkeypatch):
    no_collector(monkeypatch)
    system = AlertSystem({"thresholds": preset, "record": False})
    assert system.thresholds == getattr(AlertThresholds, preset.upper())
    system.close()


def test_guide_integration_flow_with_a_real_logger(
    collector: CollectorProcess, smtp: MailServer, tmp_path: Path, monkeypatch
):
    """The guide's "Full Integration" points: health checks every 10 episodes on the logger's
    own latest episode and history, then the completion notice."""
    for key, value in collector.env.items():
        if key.startswith("TRAINDASH_"):
            monkeypatch.setenv(key, value)
    from nexlify.monitoring.metrics_logger import MetricsLogger

    metrics_logger = MetricsLogger("guide-flow", output_dir=str(tmp_path))
    config = {
        "enable_alerts": True,
        "email": smtp.email_config(),
        "thresholds": AlertThresholds.CONSERVATIVE,
        "run_id": metrics_logger.run_id,
    }
    alert_system = AlertSystem(config)
    for episode in range(60):
        profit = -250.0 if episode == 59 else float(episode % 7)
        metrics_logger.log_episode(episode, profit, 0.5)
        if episode % 10 == 0 or episode == 59:
            latest = metrics_logger.get_latest_episode()
            recent = metrics_logger.episode_metrics
            alert_system.check_training_health(latest, recent)
    alert_system.send_training_complete(
        total_episodes=60, best_profit=6.0, best_sharpe=0.5, training_time=12.0
    )
    assert alert_system.flush(30)
    alert_system.close()
    metrics_logger.close()
    assert [m.message["Subject"] for m in smtp.mails] == [
        "[traindash WARNING] Low profit",
        "[traindash WARNING] Slow Learning",
        "[traindash INFO] Training Complete",
    ]
    rows = alert_rows(collector, f"run_id = '{metrics_logger.run_id}'")
    assert [(r["rule"], r["channels"]) for r in rows] == [
        ("profit_low", ["email"]),
        ("no_improvement", ["email"]),
        ("training_complete", ["email"]),
    ]

"""End to end: a real collector, `traindash alerts` as a subprocess, a trainer, real SMTP/HTTP."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.servers import MailServer, SlackStub
from tests.harness import ROOT, CollectorProcess, run_cli, traindash_cmd, wait_for
from traindash.producer import MetricsLogger
from traindash.query import sql_literal


class AlertsProcess:
    """``traindash alerts --config ...`` as a child process; always killed at the end."""

    def __init__(self, collector: CollectorProcess, config: Path, log: Path, *args: str, **env: str) -> None:
        self.collector = collector
        self.log_path = log
        self.consumer = args[args.index("--consumer") + 1] if "--consumer" in args else "traindash.alerts"
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                traindash_cmd("alerts", "--config", str(config), *args),
                env={**collector.env, **env},
                cwd=ROOT,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"alerts exited with {self.proc.returncode}:\n{self.log()}")
            # its run is registered and its start-up has read the runs (it marked "*" then)
            consumer = sql_literal(self.consumer)
            return self.collector.scalar("SELECT count(*) FROM runs WHERE role = 'alerts'") > 0 and (
                self.collector.scalar(
                    f"SELECT count(*) FROM alert_marks WHERE consumer = {consumer} AND run_id = '*'"
                )
            )

        wait_for(ready, 30, "the alerts process to register its run and start")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_config(tmp_path: Path, smtp: MailServer, **alerts: Any) -> Path:
    block = {
        "enabled": True,
        "email": smtp.email_config(),
        "slack": {"enabled": True},  # the webhook URL comes from TRAINDASH_SLACK_WEBHOOK_URL
        "thresholds": {
            "no_improvement_episodes": 5,
            "critical_loss_threshold": 100.0,
            "min_profit_warning": -50.0,
        },
        "new_best_min_episodes": 3,
        "storm_threshold": 100,
        "batch_window": 0.05,
        "status_poll_interval": 0.5,
        "rules": [
            {
                "name": "deep_drawdown",
                "condition": "drawdown > 300 and win_rate < 0.4",
                "for_episodes": 2,
                "level": "critical",
                "title": "Deep drawdown",
            }
        ],
        **alerts,
    }
    path = tmp_path / "neural_config.json"
    path.write_text(
        json.dumps(
            {
                "training_dashboard": {
                    "metrics_logging": {"output_dir": str(tmp_path / "alerts_logs")},
                    "alerts": block,
                }
            }
        )
    )
    return path


@pytest.fixture
def alerts_proc(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
) -> Iterator[AlertsProcess]:
    proc = AlertsProcess(
        collector,
        write_config(tmp_path, smtp),
        tmp_path / "alerts.log",
        TRAINDASH_SLACK_WEBHOOK_URL=slack.url,
    )
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.kill()


def rows_for(collector: CollectorProcess, run_id: str) -> list[dict]:
    return collector.query(
        f"SELECT level, rule, title, message, channels, source FROM alerts "
        f"WHERE run_id = {sql_literal(run_id)} ORDER BY seq"
    ).to_pylist()


def test_each_rule_fires_once_and_the_table_matches_what_was_sent(
    collector: CollectorProcess,
    alerts_proc: AlertsProcess,
    smtp: MailServer,
    slack: SlackStub,
    tmp_path: Path,
):
    lg = MetricsLogger("e2e", output_dir=str(tmp_path), config=collector.producer_config())
    for i, profit in enumerate([1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0, 0.0], start=1):
        lg.log_episode(i, profit, sharpe=0.5, win_rate=0.6, drawdown=10.0)
    assert lg.flush(10)
    for _ in range(10):
        lg.log_model_metrics(loss=math.nan, q_values=[0.1, 0.2])
    assert lg.flush(10)
    lg.log_model_metrics(loss=500.0, q_values=[0.1, 0.2])
    lg.log_episode(10, -60.0, win_rate=0.6, drawdown=10.0)
    assert lg.flush(10)
    for i in (11, 12, 13):
        lg.log_episode(i, -60.0, win_rate=0.3, drawdown=400.0)
    # close() takes final_metrics from local stats that may not include the last queued
    # episodes yet (reported to the lead); flushing first makes them complete.
    assert lg.flush(10)
    lg.close()

    expected = {
        "new_best": "info",
        "no_improvement": "warning",
        "nan_metric": "critical",
        "nan_metric.recovered": "info",
        "loss_critical": "critical",
        "profit_low": "warning",
        "custom:deep_drawdown": "critical",
        "training_complete": "info",
    }
    rows = wait_for(
        lambda: len(r := rows_for(collector, lg.run_id)) >= len(expected) and r,
        60,
        f"{len(expected)} alerts for the run\n{alerts_proc.log()}",
    )
    assert sorted(r["rule"] for r in rows) == sorted(expected), alerts_proc.log()
    for r in rows:
        assert r["level"] == expected[r["rule"]], r
        assert r["channels"] == ["email", "slack"], r
        assert r["source"] != lg.run_id
    by_rule = {r["rule"]: r for r in rows}
    assert by_rule["nan_metric"]["message"] == f"Non-finite values in loss for run {lg.run_id}"
    assert by_rule["loss_critical"]["message"] == (
        f"Loss 500 is above the critical threshold 100 for run {lg.run_id}"
    )
    assert by_rule["profit_low"]["title"] == "Low profit"
    assert by_rule["no_improvement"]["title"] == "Slow Learning"
    assert by_rule["custom:deep_drawdown"]["title"] == "Deep drawdown"
    assert by_rule["custom:deep_drawdown"]["message"].startswith(
        "drawdown > 300 and win_rate < 0.4 for 2 episodes for run"
    )
    assert by_rule["training_complete"]["message"].startswith(
        f"Training complete for run {lg.run_id}: total episodes 13"
    )

    # what the channels got is what the table says, each alert once
    wait_for(lambda: len(slack.requests) >= len(rows) and len(smtp.mails) >= len(rows), 30, "deliveries")
    assert sorted(slack.texts()) == sorted(
        f"[{r['level'].upper()}] {r['title']}: {r['message']}" for r in rows
    )
    assert sorted(m.message["Subject"] for m in smtp.mails) == sorted(
        f"[traindash {r['level'].upper()}] {r['title']}" for r in rows
    )
    link = f"http://127.0.0.1:8050/?run={lg.run_id}"
    assert all(link in json.dumps(r.body) for r in slack.requests)
    assert "secretpart" not in alerts_proc.log()

    # SIGTERM: the loop sees the flag and exits cleanly
    alerts_proc.proc.send_signal(signal.SIGTERM)
    assert alerts_proc.proc.wait(30) == 0, alerts_proc.log()
    assert collector.scalar("SELECT count(*) FROM leaderboard WHERE run_id LIKE 'traindash.alerts%'") == 0


TRAINER = textwrap.dedent("""
    import sys, time
    from traindash.producer import MetricsLogger
    from traindash.config import ProducerConfig
    lg = MetricsLogger("stall", output_dir=sys.argv[2], run_id=sys.argv[1],
                       config=ProducerConfig.resolve())
    lg.log_episode(1, 1.0)
    assert lg.flush(10)
    print("ready", flush=True)
    time.sleep(120)
""")


def test_stalled_trainer_and_its_recovery(
    collector: CollectorProcess, alerts_proc: AlertsProcess, slack: SlackStub, tmp_path: Path
):
    run_id = "stall-run-1"
    trainer = subprocess.Popen(
        [sys.executable, "-c", TRAINER, run_id, str(tmp_path / "t1")],
        env=collector.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert trainer.stdout is not None and trainer.stdout.readline().strip() == "ready"
        trainer.kill()  # no END, no more heartbeats
        trainer.wait()
    finally:
        if trainer.poll() is None:
            trainer.kill()
            trainer.wait()
        if trainer.stdout is not None:
            trainer.stdout.close()
    rows = wait_for(lambda: rows_for(collector, run_id), 30, f"a stall alert\n{alerts_proc.log()}")
    assert [(r["rule"], r["level"], r["title"]) for r in rows] == [
        ("trainer_stalled", "warning", "Trainer stalled")
    ]
    lg = MetricsLogger(
        "stall", output_dir=str(tmp_path / "t2"), run_id=run_id, config=collector.producer_config()
    )
    lg.log_episode(2, 2.0)
    assert lg.flush(10)
    rows = wait_for(lambda: len(r := rows_for(collector, run_id)) >= 2 and r, 30, "the recovery")
    assert [(r["rule"], r["level"]) for r in rows[1:]] == [("trainer_recovered", "info")]
    lg.close()
    rows = wait_for(lambda: len(r := rows_for(collector, run_id)) >= 3 and r, 30, "the end")
    assert [r["rule"] for r in rows] == ["trainer_stalled", "trainer_recovered", "training_complete"]
    assert any("Trainer stalled" in t for t in slack.texts())


def test_unsafe_custom_rule_is_refused_at_start(
    collector: CollectorProcess, smtp: MailServer, tmp_path: Path
):
    cfg = write_config(tmp_path, smtp, rules=[{"condition": "__import__('os').system('true')"}])
    result = run_cli("alerts", "--config", str(cfg), env=collector.env, timeout=60)
    assert result.returncode == 1
    assert "custom alert rule" in result.stderr and "Call is not allowed" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_storm_across_runs_is_batched_and_failed_channels_are_recorded(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
):
    slack.script = [(500, {})] * 1000  # Slack is down for the whole test
    cfg = write_config(
        tmp_path,
        smtp,
        storm_threshold=5,
        batch_window=1.0,
        max_attempts=2,
        retry_backoff=0.1,
        slack_retries=0,
    )
    proc = AlertsProcess(collector, cfg, tmp_path / "alerts.log", TRAINDASH_SLACK_WEBHOOK_URL=slack.url)
    loggers = []
    try:
        proc.wait_ready()
        for i in range(8):
            lg = MetricsLogger(
                f"storm{i}", output_dir=str(tmp_path / f"s{i}"), config=collector.producer_config()
            )
            loggers.append(lg)
            lg.log_model_metrics(loss=math.inf)
        for lg in loggers:
            assert lg.flush(10)
        ids = ", ".join(sql_literal(lg.run_id) for lg in loggers)

        def stored() -> list[dict]:
            return collector.query(
                f"SELECT run_id, rule, channels, data FROM alerts WHERE run_id IN ({ids})"
            ).to_pylist()

        rows = wait_for(lambda: len(r := stored()) == 8 and r, 60, f"8 alerts\n{proc.log()}")
        assert {r["rule"] for r in rows} == {"nan_metric"}
        assert all(r["channels"] == ["email"] for r in rows)  # Slack failed, and it says so
        errors = json.loads(rows[0]["data"])["delivery_errors"]
        assert errors == {"slack": "slack webhook answered HTTP 500 (attempt 2)"}
        assert len(slack.requests) <= 2 * 2  # a batch or two, each tried twice
        assert len(smtp.mails) <= 2 and "alerts across" in smtp.mails[0].message["Subject"]
    finally:
        for lg in loggers:
            lg.close(timeout=2)
        proc.kill()


def test_model_rows_without_q_values_or_gradients_are_not_nan_alerts():
    from traindash.alerts.service import clean_model_row

    row = clean_model_row(
        {"loss": 1.0, "q_values": None, "q_mean": math.nan, "grad_mean": math.nan, "grad_std": 0.5}
    )
    assert row == {"loss": 1.0, "q_values": None, "grad_std": 0.5}


def test_sigterm_drains_and_a_second_signal_forces_exit(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
):
    slack.delay = 60.0  # Slack hangs on every request
    cfg = write_config(tmp_path, smtp, slack={"enabled": True, "timeout": 60})
    proc = AlertsProcess(collector, cfg, tmp_path / "alerts.log", TRAINDASH_SLACK_WEBHOOK_URL=slack.url)
    lg = MetricsLogger("drain", output_dir=str(tmp_path), config=collector.producer_config())
    where = f"run_id = {sql_literal(lg.run_id)}"
    try:
        proc.wait_ready()
        lg.log_model_metrics(loss=math.nan)
        assert lg.flush(10)
        wait_for(lambda: slack.requests and smtp.mails, 30, f"the deliveries\n{proc.log()}")
        proc.proc.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.proc.wait(1.0)  # still draining: Slack has not answered
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(20) == 0, proc.log()
        assert "gave up delivering some alerts at shutdown" in proc.log()
        # Not delivered everywhere, so not recorded: the next start sends it again.
        assert collector.scalar(f"SELECT count(*) FROM alerts WHERE {where}") == 0
        slack.delay = 0.0
        proc = AlertsProcess(collector, cfg, tmp_path / "alerts2.log", TRAINDASH_SLACK_WEBHOOK_URL=slack.url)
        (row,) = wait_for(
            lambda: collector.query(f"SELECT rule, channels, data FROM alerts WHERE {where}").to_pylist(),
            30,
            f"the retried alert\n{proc.log()}",
        )
        assert row["rule"] == "nan_metric" and row["channels"] == ["email", "slack"]
        assert "delivery_errors" not in json.loads(row["data"])
        assert len(smtp.mails) == 2  # at least once: email had it before the forced exit
    finally:
        lg.close(timeout=2)
        proc.kill()

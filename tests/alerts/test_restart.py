"""Alerts that survive restarts (issue 18): a SIGKILLed alerts process misses nothing and
repeats nothing; a history evaluated again raises no alert twice."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.alerts.servers import MailServer, SlackStub
from tests.alerts.test_service import TRAINER, AlertsProcess, write_config
from tests.harness import ROOT, CollectorProcess, wait_for
from traindash.producer import MetricsLogger
from traindash.query import sql_literal

# Real processes on a shared 2-core box: generous deadlines, and room beyond the default timeout.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
LIVENESS = ("Trainer stalled", "Trainer lost", "Trainer recovered")

THRESHOLDS = {"no_improvement_episodes": 1000, "critical_loss_threshold": 100.0, "min_profit_warning": -50.0}


def config(tmp_path: Path, smtp: MailServer, **extra: Any) -> Path:
    return write_config(
        tmp_path,
        smtp,
        thresholds=THRESHOLDS,
        rules=[],
        new_best_min_episodes=1000,
        cooldown_seconds=0,
        **extra,
    )


def alerts_of(collector: CollectorProcess, run_id: str, liveness: bool = False) -> list[dict]:
    """The run's stored alerts; without liveness ones unless asked (a loaded machine can delay a
    live trainer's heartbeats past the stall limit, which is not what these tests are about)."""
    skip = "" if liveness else " AND rule NOT LIKE 'trainer_%'"
    return collector.query(
        "SELECT rule, message, alert_key, row_seq, channels FROM alerts "
        f"WHERE run_id = {sql_literal(run_id)}{skip} ORDER BY ts, row_seq"
    ).to_pylist()


def deliveries(slack: SlackStub, smtp: MailServer) -> tuple[Counter, Counter]:
    """Texts sent to Slack and email, each with how often (liveness ones only for stalled-run)."""

    def keep(text: str) -> bool:
        return "stalled-run" in text or not any(word in text for word in LIVENESS)

    mails = (m.message["Subject"] + " | " + m.message.get_payload(decode=True).decode() for m in smtp.mails)
    return Counter(t for t in slack.texts() if keep(t)), Counter(m.split("\n")[0] for m in mails if keep(m))


def marked(collector: CollectorProcess, consumer: str, run_id: str) -> bool:
    """The consumer's watermark of the run reached the run's last committed record."""
    return bool(
        collector.scalar(
            "SELECT coalesce(max(m.evaluated_seq), -1) = any_value(r.acked_seq) FROM runs r "
            f"LEFT JOIN alert_marks m ON m.run_id = r.run_id AND m.consumer = {sql_literal(consumer)} "
            f"WHERE r.run_id = {sql_literal(run_id)}"
        )
    )


@pytest.mark.parametrize("stop", ["SIGKILL", "SIGTERM"])
def test_alerts_stopped_miss_nothing_and_repeat_nothing(
    stop: str, stopped_collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
) -> None:
    collector = stopped_collector
    collector.extra_env.update(TRAINDASH_STALL_AFTER="2", TRAINDASH_LOST_AFTER="600")
    collector.start()
    cfg = config(tmp_path, smtp)
    env = {"TRAINDASH_SLACK_WEBHOOK_URL": slack.url}
    first = AlertsProcess(collector, cfg, tmp_path / "alerts1.log", **env)
    lg = MetricsLogger("restart", output_dir=str(tmp_path / "t"), config=collector.producer_config())
    stalled: subprocess.Popen | None = None
    second: AlertsProcess | None = None
    try:
        first.wait_ready()
        for i, profit in enumerate([1.0, 2.0, -60.0, 3.0], start=1):
            lg.log_episode(i, profit)
        assert lg.flush(10)
        before = wait_for(
            lambda: len(r := alerts_of(collector, lg.run_id)) >= 2 and r, 60, f"2 alerts\n{first.log()}"
        )
        assert [r["rule"] for r in before] == ["profit_low", "profit_low.recovered"]
        wait_for(lambda: len(slack.requests) >= 2 and len(smtp.mails) >= 2, 60, "2 deliveries each")
        if stop == "SIGKILL":
            first.kill()
        else:
            first.proc.send_signal(signal.SIGTERM)
            assert first.proc.wait(30) == 0, first.log()

        # While nobody watches: a NaN loss, a critical loss, a low profit, a stalled trainer.
        lg.log_model_metrics(loss=math.nan)
        lg.log_model_metrics(loss=500.0)
        lg.log_episode(5, -70.0)
        assert lg.flush(10)
        stalled = subprocess.Popen(
            [sys.executable, "-c", TRAINER, "stalled-run", str(tmp_path / "s")],
            env=collector.env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert stalled.stdout is not None and stalled.stdout.readline().strip() == "ready"
        stalled.kill()
        stalled.wait()
        wait_for(
            lambda: collector.scalar("SELECT status FROM runs WHERE run_id = 'stalled-run'") == "stalled",
            30,
            "the trainer to be marked stalled",
        )
        assert [sum(c.values()) for c in deliveries(slack, smtp)] == [2, 2]

        second = AlertsProcess(collector, cfg, tmp_path / "alerts2.log", **env)
        expected = [
            "profit_low",
            "profit_low.recovered",
            "nan_metric",
            "nan_metric.recovered",
            "loss_critical",
            "profit_low",
        ]
        rows = wait_for(
            lambda: len(r := alerts_of(collector, lg.run_id)) >= len(expected) and r,
            60,
            f"the alerts missed while down\n{second.log()}",
        )
        (stall,) = wait_for(
            lambda: alerts_of(collector, "stalled-run", liveness=True), 60, f"the stall alert\n{second.log()}"
        )
        wait_for(lambda: marked(collector, "traindash.alerts", lg.run_id), 60, "the watermark to catch up")
        wait_for(lambda: len(slack.requests) >= 7 and len(smtp.mails) >= 7, 60, "7 deliveries each")
    finally:
        for p in (first, second):
            if p is not None:
                p.kill()
        lg.close(timeout=5)
        if stalled is not None and stalled.poll() is None:
            stalled.kill()
            stalled.wait()
        if stalled is not None and stalled.stdout is not None:
            stalled.stdout.close()

    assert sorted(r["rule"] for r in rows[: len(expected)]) == sorted(expected), second.log()
    assert stall["rule"] == "trainer_stalled" and stall["row_seq"] is None
    assert len({r["alert_key"] for r in rows}) == len(rows)  # one row per key
    assert all(r["channels"] == ["email", "slack"] for r in [*rows, stall])
    # each alert reached Slack and email exactly once; nothing from before the kill came again
    texts, mails = deliveries(slack, smtp)
    assert all(n == 1 for n in texts.values()), texts
    assert all(n == 1 for n in mails.values()), mails
    assert len(texts) == len(mails) == 7
    assert sum(t.startswith("[WARNING] Low profit: Profit -60 ") for t in texts) == 1
    assert sum(t.startswith("[WARNING] Low profit: Profit -70 ") for t in texts) == 1
    assert "reading back run" in second.log()


def test_the_same_history_evaluated_twice_raises_nothing_new(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, smtp, cooldown_seconds=0)
    env = {"TRAINDASH_SLACK_WEBHOOK_URL": slack.url}
    live = AlertsProcess(collector, cfg, tmp_path / "live.log", **env)
    procs = [live]
    try:
        live.wait_ready()
        lg = MetricsLogger("history", output_dir=str(tmp_path / "t"), config=collector.producer_config())
        profits = [1.0, 5.0, 2.0, -80.0, 3.0, 9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -90.0, 2.0]
        for i, profit in enumerate(profits, start=1):
            lg.log_episode(i, profit, win_rate=0.3 if i > 10 else 0.6, drawdown=400.0 if i > 10 else 5.0)
            if i in (4, 9):
                lg.log_model_metrics(loss=math.nan if i == 4 else 700.0)
                lg.log_model_metrics(loss=1.0)
        assert lg.flush(10)
        lg.close()
        wait_for(lambda: marked(collector, "traindash.alerts", lg.run_id), 60, f"the live pass\n{live.log()}")
        first = alerts_of(collector, lg.run_id)
        assert {r["rule"] for r in first} >= {
            "profit_low",
            "nan_metric",
            "loss_critical",
            "new_best",
            "no_improvement",
            "custom:deep_drawdown",
            "training_complete",
        }, first
        wait_for(
            lambda: len(slack.requests) >= len(first) and len(smtp.mails) >= len(first), 60, "deliveries"
        )
        sent = (len(slack.requests), len(smtp.mails))
        live.proc.terminate()
        assert live.proc.wait(30) == 0

        for consumer in ("replay-1", "replay-2"):  # two fresh consumers read the whole history
            args = ("--consumer", consumer, "--from-start")
            proc = AlertsProcess(collector, cfg, tmp_path / f"{consumer}.log", *args, **env)
            procs.append(proc)
            wait_for(lambda c=consumer: marked(collector, c, lg.run_id), 60, f"{consumer}\n{proc.log()}")
            proc.proc.terminate()
            assert proc.proc.wait(30) == 0, proc.log()
            assert "reading back run" in proc.log()
            assert alerts_of(collector, lg.run_id) == first
            assert (len(slack.requests), len(smtp.mails)) == sent
    finally:
        for p in procs:
            p.kill()


def test_rule_state_after_a_restart_is_rebuilt_from_sql(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
) -> None:
    """Cooldowns and the best-so-far carry over a SIGKILL: a low profit inside the cooldown
    stays quiet, and "no improvement" counts the episodes logged before the restart."""
    thresholds = {**THRESHOLDS, "no_improvement_episodes": 4}
    cfg = write_config(
        tmp_path, smtp, thresholds=thresholds, rules=[], new_best_min_episodes=1000, cooldown_seconds=300
    )
    env = {"TRAINDASH_SLACK_WEBHOOK_URL": slack.url}
    first = AlertsProcess(collector, cfg, tmp_path / "alerts1.log", **env)
    second: AlertsProcess | None = None
    lg = MetricsLogger("rebuild", output_dir=str(tmp_path / "t"), config=collector.producer_config())
    try:
        first.wait_ready()
        for i, profit in enumerate([10.0, -60.0, 5.0], start=1):
            lg.log_episode(i, profit)
        assert lg.flush(10)
        wait_for(lambda: len(alerts_of(collector, lg.run_id)) >= 2, 60, f"2 alerts\n{first.log()}")
        wait_for(lambda: marked(collector, "traindash.alerts", lg.run_id), 60, "the watermark")
        first.kill()
        lg.log_episode(4, -70.0)  # low again, inside the 300 s cooldown of the first one
        lg.log_episode(5, 1.0)  # the 4th episode since the best (episode 1)
        assert lg.flush(10)
        fifth = collector.scalar(f"SELECT max(seq) FROM episodes WHERE run_id = {sql_literal(lg.run_id)}")
        second = AlertsProcess(collector, cfg, tmp_path / "alerts2.log", **env)
        wait_for(lambda: marked(collector, "traindash.alerts", lg.run_id), 60, f"catch-up\n{second.log()}")
        rows = wait_for(lambda: len(r := alerts_of(collector, lg.run_id)) >= 3 and r, 60, "the third alert")
    finally:
        for p in (first, second):
            if p is not None:
                p.kill()
        lg.close(timeout=5)
    assert [(r["rule"], r["row_seq"]) for r in rows][2:] == [("no_improvement", fifth)], rows
    assert "best profit 10" in rows[2]["message"]
    assert [r["rule"] for r in rows[:2]] == ["profit_low", "profit_low.recovered"]


def test_a_collector_restart_while_alerts_runs_loses_and_repeats_nothing(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
) -> None:
    cfg = config(tmp_path, smtp)
    alerts = AlertsProcess(collector, cfg, tmp_path / "alerts.log", TRAINDASH_SLACK_WEBHOOK_URL=slack.url)
    lg = MetricsLogger(
        "colrestart", output_dir=str(tmp_path / "t"), config=collector.producer_config(resend_after=0.5)
    )
    try:
        alerts.wait_ready()
        lg.log_episode(1, -60.0)
        assert lg.flush(10)
        wait_for(lambda: alerts_of(collector, lg.run_id), 60, f"the first alert\n{alerts.log()}")
        collector.kill()  # SIGKILL; the trainer keeps logging into its unacknowledged buffer
        lg.log_model_metrics(loss=math.nan)
        lg.log_model_metrics(loss=500.0)
        lg.log_episode(2, 1.0)
        collector.start()
        assert lg.flush(30)
        expected = [
            "profit_low",
            "nan_metric",
            "nan_metric.recovered",
            "loss_critical",
            "profit_low.recovered",
        ]
        rows = wait_for(
            lambda: len(r := alerts_of(collector, lg.run_id)) >= len(expected) and r,
            60,
            f"the alerts after the collector restart\n{alerts.log()}",
        )
        wait_for(lambda: marked(collector, "traindash.alerts", lg.run_id), 60, "the watermark")
        wait_for(lambda: len(slack.requests) >= 5 and len(smtp.mails) >= 5, 60, "5 deliveries each")
        assert alerts.proc.poll() is None
    finally:
        alerts.kill()
        lg.close(timeout=5)
    assert sorted(r["rule"] for r in rows) == sorted(expected)
    texts, mails = deliveries(slack, smtp)
    assert len(texts) == len(mails) == 5
    assert all(n == 1 for n in [*texts.values(), *mails.values()])

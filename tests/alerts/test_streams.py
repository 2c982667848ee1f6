"""Alerts follow every stream of a multi-writer run: each stream's seqs are its own, so the
alerts process keeps a track, a watermark and rule state per stream, and a SIGKILL in the
middle neither loses nor repeats an alert of either stream."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.alerts.servers import MailServer, SlackStub
from tests.alerts.test_restart import THRESHOLDS, alerts_of, deliveries
from tests.alerts.test_service import AlertsProcess, write_config
from tests.harness import CollectorProcess, wait_for
from traindash.producer import MetricsLogger
from traindash.query import sql_literal

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

RUN = "two-streams"
RULE = "custom:deep_drawdown"
# Episodes whose drawdown is over the limit, per stream. Both streams number their records
# 1, 2, 3, ... (episode i is seq i + 1 in each), so their seqs collide everywhere.
HIGH = {"a": (3, 5, 8, 11), "b": (2, 6, 9, 12)}
# b is over the limit at the kill: its recovery (episode 7) needs its state rebuilt from SQL.
BEFORE, LAST = 6, 13  # episodes logged before the kill; in all


def log(lg: MetricsLogger, stream: str, episodes: range) -> None:
    for i in episodes:
        # distinct values, so that every alert's text is distinct too
        drawdown = 1000.0 + 10 * i + (stream == "b") if i in HIGH[stream] else 5.0
        lg.log_episode(i, 1.0, drawdown=drawdown)


def expected(stream: str) -> set[tuple[str, int]]:
    """(rule, episode): each high episode fires the rule, and the next one clears it."""
    out = {(RULE, i) for i in HIGH[stream]} | {(RULE + ".recovered", i + 1) for i in HIGH[stream]}
    return out | {("training_complete", LAST + 1)}  # the stream's end, after its last episode


def recorded(collector: CollectorProcess) -> list[dict]:
    """Each stored alert of the run (liveness aside) with its stream and the episode it is about."""
    rows = alerts_of(collector, RUN)
    seqs = {
        (r["stream"], r["seq"]): r["episode"]
        for r in collector.query(
            f"SELECT stream, seq, episode FROM episodes WHERE run_id = {sql_literal(RUN)}"
        ).to_pylist()
    }
    streams = collector.query(
        "SELECT alert_key, data->>'stream' AS stream FROM alerts "
        f"WHERE run_id = {sql_literal(RUN)} AND alert_key IS NOT NULL"
    ).to_pylist()
    by_key = {r["alert_key"]: r["stream"] for r in streams}
    for r in rows:
        r["stream"] = by_key[r["alert_key"]]
        r["episode"] = seqs.get((r["stream"], r["row_seq"]), LAST + 1)
    return rows


def marks_caught_up(collector: CollectorProcess) -> bool:
    """Each stream's watermark (keyed ``run#stream``) reached its last committed record."""
    return bool(
        collector.scalar(
            "SELECT count(*) = 2 AND bool_and(m.evaluated_seq = s.acked_seq) FROM streams s "
            "JOIN alert_marks m ON m.run_id = s.stream_key AND m.consumer = 'traindash.alerts' "
            f"WHERE s.run_id = {sql_literal(RUN)} AND s.status = 'finished'"
        )
    )


def test_every_stream_of_a_run_is_alerted_exactly_once_across_a_sigkill(
    collector: CollectorProcess, smtp: MailServer, slack: SlackStub, tmp_path: Path
) -> None:
    rule = {"name": "deep_drawdown", "condition": "drawdown > 300", "for_episodes": 1, "level": "critical"}
    cfg = write_config(
        tmp_path,
        smtp,
        thresholds=THRESHOLDS,
        rules=[{**rule, "title": "Deep drawdown"}],
        new_best_min_episodes=1000,
        cooldown_seconds=0,
    )
    env = {"TRAINDASH_SLACK_WEBHOOK_URL": slack.url}
    first = AlertsProcess(collector, cfg, tmp_path / "alerts1.log", **env)
    second: AlertsProcess | None = None
    loggers = {
        s: MetricsLogger(
            "fleet", output_dir=str(tmp_path / s), run_id=RUN, stream=s, config=collector.producer_config()
        )
        for s in HIGH
    }
    try:
        first.wait_ready()
        for s, lg in loggers.items():
            log(lg, s, range(1, BEFORE + 1))
            assert lg.flush(10)
        live = sum(1 for s in HIGH for rule, i in expected(s) if i <= BEFORE)
        wait_for(
            lambda: len(recorded(collector)) >= live, 60, f"{live} alerts before the kill\n{first.log()}"
        )
        wait_for(lambda: len(slack.requests) >= live and len(smtp.mails) >= live, 60, "the deliveries")
        first.kill()  # SIGKILL

        for s, lg in loggers.items():  # while nobody watches: more of each stream, then its end
            log(lg, s, range(BEFORE + 1, LAST + 1))
            lg.close(timeout=10)
        second = AlertsProcess(collector, cfg, tmp_path / "alerts2.log", **env)
        total = sum(len(expected(s)) for s in HIGH)
        rows = wait_for(
            lambda: len(r := recorded(collector)) >= total and r, 90, f"every alert\n{second.log()}"
        )
        wait_for(lambda: marks_caught_up(collector), 60, f"the streams' watermarks\n{second.log()}")
        wait_for(lambda: len(slack.requests) >= total and len(smtp.mails) >= total, 60, "every delivery")
    finally:
        for p in (first, second):
            if p is not None:
                p.kill()
        for lg in loggers.values():
            lg.close(timeout=5)

    assert len(rows) == total, rows
    assert len({r["alert_key"] for r in rows}) == total  # one row per key
    for s in HIGH:
        got = [(r["rule"], r["episode"]) for r in rows if r["stream"] == s]
        assert sorted(got) == sorted(expected(s)), (s, got)
        assert all(r["alert_key"].startswith(f"{RUN}#{s}:") for r in rows if r["stream"] == s)
        assert all(f"{RUN}#{s}" in r["message"] for r in rows if r["stream"] == s)
    assert all(r["channels"] == ["email", "slack"] for r in rows)
    # each alert reached Slack and email exactly once: nothing from before the kill came again
    texts, mails = deliveries(slack, smtp)
    assert all(n == 1 for n in texts.values()), texts
    assert all(n == 1 for n in mails.values()), mails
    assert len(texts) == len(mails) == total
    log2 = second.log()
    assert f"reading back run {RUN}#a" in log2 and f"reading back run {RUN}#b" in log2

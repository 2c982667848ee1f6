"""Trainers -> ZeroMQ -> collector -> DuckDB -> SQL, with real processes and sockets."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from tests.harness import CollectorProcess, run_cli, traindash_cmd, wait_for
from traindash.producer import MetricsLogger

EPISODES = 3000
TRAINERS = 3


def _demo(c: CollectorProcess, trainers: int, episodes: int, experiment: str) -> subprocess.Popen:
    return subprocess.Popen(
        cwd=c.db.parent,
        args=traindash_cmd(
            "demo",
            "--trainers",
            str(trainers),
            "--episodes",
            str(episodes),
            "--interval",
            "0",
            "--experiment",
            experiment,
        ),
        env=c.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_many_trainer_processes_every_row_exactly_once(collector: CollectorProcess) -> None:
    demo = _demo(collector, TRAINERS, EPISODES, "multi")
    try:
        out, _ = demo.communicate(timeout=90)
    finally:
        demo.kill()
    assert demo.returncode == 0, out
    per_run = collector.query(
        "SELECT run_id, count(*) AS n, count(DISTINCT seq) AS d, count(DISTINCT episode) AS e, "
        "min(episode) AS lo, max(episode) AS hi FROM episodes GROUP BY run_id"
    ).to_pylist()
    assert len(per_run) == TRAINERS
    for row in per_run:
        assert row["n"] == row["d"] == row["e"] == EPISODES, row
        assert (row["lo"], row["hi"]) == (1, EPISODES)
    runs = collector.query("SELECT * FROM runs ORDER BY run_id").to_pylist()
    assert len(runs) == TRAINERS
    assert {r["status"] for r in runs} == {"finished"}
    assert {r["experiment"] for r in runs} == {"multi"}
    for r in runs:
        total = collector.scalar(
            f"SELECT (SELECT count(*) FROM episodes WHERE run_id = '{r['run_id']}') + "
            f"(SELECT count(*) FROM model_metrics WHERE run_id = '{r['run_id']}') + "
            f"(SELECT count(*) FROM system WHERE run_id = '{r['run_id']}')"
        )
        assert r["acked_seq"] == total + 2  # plus the run's start and end records
        assert r["host"] and r["pid"] > 0 and r["started_at"] is not None
    # the demo's custom metric is a DOUBLE column of its own
    assert collector.scalar("SELECT count(portfolio_value) FROM episodes") == TRAINERS * EPISODES
    assert collector.scalar("SELECT count(*) FROM model_metrics WHERE len(q_values) = 16") == TRAINERS * (
        EPISODES // 5
    )


def test_trainer_started_before_collector_loses_nothing(
    stopped_collector: CollectorProcess, tmp_path
) -> None:
    c = stopped_collector
    logger = MetricsLogger(
        "early", output_dir=str(tmp_path / "logs"), config=c.producer_config(resend_after=0.5)
    )
    for i in range(2000):
        logger.log_episode(i, float(i), custom_score=i / 10)
    c.start()
    for i in range(2000, 4000):
        logger.log_episode(i, float(i), custom_score=i / 10)
    assert logger.flush(timeout=30)
    logger.close()
    assert c.scalar("SELECT count(DISTINCT episode) FROM episodes") == 4000
    assert c.scalar("SELECT count(*) FROM episodes") == 4000
    assert c.scalar("SELECT sum(custom_score) FROM episodes") == pytest.approx(
        sum(i / 10 for i in range(4000))
    )
    assert not (tmp_path / "logs" / f"{logger.run_id}.spool").exists()


def test_nan_and_inf_are_stored_as_data(collector: CollectorProcess, tmp_path) -> None:
    with MetricsLogger("odd", output_dir=str(tmp_path), config=collector.producer_config()) as lg:
        lg.log_episode(1, float("nan"), sharpe=float("inf"), custom=float("-inf"))
        lg.log_model_metrics(float("nan"), q_values=[1.0, float("inf")])
    row = collector.query("SELECT profit, sharpe, custom FROM episodes").to_pylist()[0]
    assert math.isnan(row["profit"]) and row["sharpe"] == math.inf and row["custom"] == -math.inf
    assert math.isnan(collector.scalar("SELECT loss FROM model_metrics"))


def test_sql_while_running_and_after_stop(collector: CollectorProcess, tmp_path) -> None:
    with MetricsLogger("sql", output_dir=str(tmp_path), config=collector.producer_config()) as lg:
        for i in range(100):
            lg.log_episode(i, i * 1.5, custom_score=0.5)
    live = run_cli(
        "sql",
        "SELECT count(*) AS n, max(custom_score) AS s FROM episodes",
        "--format",
        "csv",
        env=collector.env,
    )
    assert live.returncode == 0, live.stderr
    assert live.stdout.splitlines() == ["n,s", "100,0.5"]
    assert collector.stop() == 0
    after = run_cli(
        "sql", "SELECT count(*) AS n FROM episodes", "--format", "json", "--timeout", "0.3", env=collector.env
    )
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == '{"n": 100}'


def test_collector_sigterm_commits_and_closes(collector: CollectorProcess, tmp_path) -> None:
    lg = MetricsLogger("term", output_dir=str(tmp_path), config=collector.producer_config())
    for i in range(500):
        lg.log_episode(i, 1.0)
    assert lg.flush(timeout=20)
    assert collector.stop() == 0
    lg.close(timeout=0.5)
    assert "collector stopped" in collector.log()
    out = run_cli(
        "sql", "SELECT count(*) FROM episodes", "--format", "csv", "--timeout", "0.3", env=collector.env
    )
    assert out.stdout.splitlines()[1] == "500"


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELEC 1", "syntax error"),
        ("DELETE FROM episodes", "only read-only SELECT"),
        ("SELECT 1; SELECT 2", "one statement per query"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled"),
    ],
)
def test_bad_sql_is_one_clear_line(collector: CollectorProcess, sql: str, message: str) -> None:
    out = run_cli("sql", sql, env=collector.env)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert message.lower() in lines[0].lower(), lines


def test_second_collector_on_same_ports_fails_clearly(collector: CollectorProcess) -> None:
    out = run_cli("collector", env=collector.env, timeout=30)
    assert out.returncode != 0
    assert "already in use" in out.stderr
    assert "Traceback" not in out.stderr
    assert collector.answers()


def test_unwritable_db_path_fails_clearly(tmp_path, stopped_collector: CollectorProcess) -> None:
    env = dict(stopped_collector.env, TRAINDASH_DB="/proc/nope/td.duckdb")
    out = run_cli("collector", env=env, timeout=30)
    assert out.returncode != 0
    assert "cannot open" in out.stderr and "Traceback" not in out.stderr


def test_unknown_flag_and_help() -> None:
    bad = subprocess.run(traindash_cmd("collector", "--nope"), capture_output=True, text=True)
    assert bad.returncode == 2 and "unrecognized arguments: --nope" in bad.stderr
    for cmd in ("collector", "sql", "demo", "replay"):
        out = subprocess.run(traindash_cmd(cmd, "--help"), capture_output=True, text=True)
        assert out.returncode == 0 and "usage: traindash " + cmd in out.stdout


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_guide_logger_api_against_the_pipeline(collector: CollectorProcess, tmp_path, sender: str) -> None:
    lg = MetricsLogger(
        experiment_name="dqn_training",
        output_dir=str(tmp_path),
        buffer_size=100,
        auto_save_interval=50,
        enable_async=True,
        sender=sender,
        config=collector.producer_config(),
    )
    for ep in range(1, 61):
        lg.log_episode(
            episode=ep,
            profit=100.0 - abs(ep - 30),
            sharpe=1.5,
            win_rate=0.6,
            drawdown=50.0,
            num_trades=10,
            epsilon=0.5,
            learning_rate=0.001,
        )
        lg.log_model_metrics(loss=1.0 / ep, q_values=[1.0, 2.0, 3.0], gradients={"mean": 0.01, "std": 0.001})
    stats = lg.get_statistics()
    assert stats["best_profit"] == 100.0 and stats["best_episode"] == 30
    assert stats["total_episodes"] == 60 and stats["total_model_updates"] == 60
    assert lg.get_latest_episode()["episode"] == 60
    assert lg.get_best_episode("profit")["episode"] == 30
    assert lg.get_smoothed_metric("profit", 10) == pytest.approx(
        sum(100.0 - abs(e - 30) for e in range(51, 61)) / 10
    )
    json_path = lg.save_metrics(format="json")
    csv_path = lg.save_metrics(format="csv")
    assert json_path.exists() and csv_path.exists()
    import json

    doc = json.loads(json_path.read_text())
    assert doc["source"] == "collector" and len(doc["episodes"]) == 60
    assert csv_path.read_text().count("\n") == 61
    lg.close()
    assert collector.scalar("SELECT status FROM runs") == "finished"


def test_collector_acks_only_batches_that_ask_and_heartbeats(collector: CollectorProcess) -> None:
    import time

    import numpy as np
    import zmq

    from traindash import wire
    from traindash.wire import RecordKind, Section

    def batch(first: int, ack: bool) -> list[bytes]:
        cols = {
            "seq": np.array([first], dtype=np.int64),
            "ts": np.array([time.time()]),
            "episode": np.array([first], dtype=np.int64),
            "profit": np.array([1.0]),
        }
        return wire.encode(wire.Batch("quiet-run", first, first, (Section(RecordKind.EPISODE, cols),), ack))

    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, wire.ack_topic("quiet-run"))
        sub.connect(collector.endpoints.rows)
        pub.connect(collector.endpoints.ingest)

        def acks(wait: float) -> list[int]:
            got, deadline = [], time.monotonic() + wait
            while sub.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                msg = wire.decode(sub.recv_multipart())
                assert isinstance(msg, wire.Ack)
                got.append(msg.acked)
            return got

        # Until the subscriptions are through, the first batch may be dropped: ask until
        # the collector answers.
        for _ in range(100):
            pub.send_multipart(batch(1, ack=True))
            if acks(0.1):
                break
        else:
            raise AssertionError("the collector never acknowledged seq 1")
        acks(0.3)  # drain answers to the repeats
        pub.send_multipart(batch(2, ack=False))
        pub.send_multipart(batch(3, ack=False))
        wait_for(
            lambda: collector.scalar("SELECT count(*) FROM episodes WHERE run_id = 'quiet-run'") == 3,
            10,
            "3 rows",
        )
        assert acks(0.5) == []  # stored, and nobody asked for an ack
        pub.send_multipart(wire.encode(wire.Heartbeat("quiet-run", 3, time.time())))
        assert acks(5.0)[-1:] == [3]
        pub.send_multipart(batch(2, ack=False))  # a re-sent duplicate is always answered
        assert acks(5.0)[-1:] == [3]
    finally:
        pub.close(0)
        sub.close(0)
        ctx.term()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-x", "-q"]))

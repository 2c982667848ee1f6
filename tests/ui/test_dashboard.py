"""TrainingDashboard: the embedded default starts what is missing and stops only that."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.harness import CollectorProcess, free_endpoints, free_port, run_cli, wait_for
from traindash.config import ProducerConfig
from traindash.producer import MetricsLogger
from traindash.query import QueryClient
from traindash.ui import TrainingDashboard
from traindash.ui.processes import collector_answers, http_ok


def test_invalid_theme_is_a_clear_value_error(tmp_path: Path) -> None:
    logger = MetricsLogger(
        "bad-theme",
        output_dir=str(tmp_path),
        config=ProducerConfig(endpoints=free_endpoints(), close_timeout=0.2),
    )
    try:
        with pytest.raises(ValueError, match="theme 'neon' is not one of cyberpunk, dark, light"):
            TrainingDashboard(logger, theme="neon")
    finally:
        logger.close()


def test_starts_collector_and_ui_when_none_runs_and_stops_only_those(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the collector it starts writes ./traindash.duckdb
    monkeypatch.delenv("TRAINDASH_DB", raising=False)
    monkeypatch.delenv("TRAINDASH_CONFIG", raising=False)
    endpoints = free_endpoints()
    logger = MetricsLogger(
        "embedded", output_dir=str(tmp_path), config=ProducerConfig(endpoints=endpoints, close_timeout=10)
    )
    dash = TrainingDashboard(logger, port=free_port(), update_interval=500, theme="light")
    try:
        assert not dash.is_running()
        dash.start(blocking=False)
        assert dash.is_running() and dash.started_collector
        pids = dash.pids()
        assert len(pids) == 2
        assert all(psutil.Process(pid).ppid() == os.getpid() for pid in pids)
        assert http_ok(dash.url)
        for i in range(1, 21):
            logger.log_episode(episode=i, profit=float(i))
        with QueryClient(endpoints.query, timeout=5) as client:
            wait_for(
                lambda: client.query("SELECT count(*) AS n FROM episodes").column(0)[0].as_py() == 20,
                30,
                "the logger's rows in the collector the dashboard started",
            )
    finally:
        dash.stop()
        logger.close()
    assert not dash.is_running()
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not collector_answers(endpoints.query)
    assert (tmp_path / "traindash.duckdb").exists()


def test_uses_a_running_collector_and_leaves_it_running(collector: CollectorProcess, tmp_path: Path) -> None:
    logger = MetricsLogger("shared", output_dir=str(tmp_path), config=collector.producer_config())
    dash = TrainingDashboard(logger, port=free_port(), update_interval=500)
    try:
        dash.start()
        assert dash.is_running() and not dash.started_collector
        assert len(dash.pids()) == 1
    finally:
        dash.stop()
        logger.close()
    assert not dash.is_running()
    assert collector.proc is not None and collector.proc.poll() is None
    assert collector_answers(collector.endpoints.query)


def test_port_in_use_is_refused_before_starting_anything(collector: CollectorProcess, tmp_path: Path) -> None:
    logger = MetricsLogger("busy", output_dir=str(tmp_path), config=collector.producer_config())
    first = TrainingDashboard(logger, port=free_port())
    second = TrainingDashboard(logger, port=first.port)
    try:
        first.start()
        with pytest.raises(RuntimeError, match="already in use"):
            second.start()
        assert second.pids() == [] and first.is_running()
    finally:
        first.stop()
        second.stop()
        logger.close()


QUICK_START = r"""
import math, sys
from nexlify.monitoring.metrics_logger import MetricsLogger
from nexlify.monitoring.training_dashboard import TrainingDashboard

logger = MetricsLogger(experiment_name="my_training")
dashboard = TrainingDashboard(logger, port=int(sys.argv[1]))
dashboard.start(blocking=False)
for episode in range(40):
    logger.log_episode(
        episode=episode, profit=10.0 * episode, sharpe=math.sin(episode), win_rate=0.5,
        epsilon=0.1, learning_rate=1e-3,
    )
    logger.log_model_metrics(loss=1.0 / (episode + 1), q_values=[1.0, 2.0])
assert logger.flush(timeout=60)
logger.close()
dashboard.stop()
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["default", "TRAINDASH_DB", "config"])
def test_the_embedded_collector_writes_the_db_every_process_reads(tmp_path: Path, where: str) -> None:
    """The guide's quick start in a fresh folder, then `traindash sql` in that folder finds its rows:
    the collector TrainingDashboard starts follows TRAINDASH_DB, the config file and the default."""
    endpoints = free_endpoints()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDASH_")}
    env.update(
        TRAINDASH_INGEST=endpoints.ingest,
        TRAINDASH_ROWS=endpoints.rows,
        TRAINDASH_QUERY=endpoints.query,
        PYTHONUNBUFFERED="1",
    )
    expected = tmp_path / "traindash.duckdb"
    if where == "TRAINDASH_DB":
        expected = tmp_path / "db" / "runs.duckdb"
        expected.parent.mkdir()
        env["TRAINDASH_DB"] = "db/runs.duckdb"  # relative: to the folder the processes run in
    elif where == "config":
        expected = tmp_path / "from_config.duckdb"
        config = tmp_path / "neural_config.json"
        config.write_text(json.dumps({"training_dashboard": {"collector": {"db": str(expected)}}}))
        env["TRAINDASH_CONFIG"] = str(config)
    proc = subprocess.run(
        [sys.executable, "-c", QUICK_START, str(free_port())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert not collector_answers(endpoints.query)  # stopped with the dashboard: sql reads the file
    assert expected.exists() and not (tmp_path / "training_logs" / "traindash.duckdb").exists()
    out = run_cli("sql", "SELECT count(*) AS n FROM episodes", "--format", "csv", env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["n", "40"]

"""TrainingDashboard: the embedded default starts what is missing and stops only that."""

from __future__ import annotations

import os
from pathlib import Path

import psutil
import pytest

from tests.harness import CollectorProcess, free_endpoints, free_port, wait_for
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


def test_starts_collector_and_ui_when_none_runs_and_stops_only_those(tmp_path: Path) -> None:
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

"""``traindash dashboard --demo``: the all-in-one command starts everything and stops it all."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psutil

from tests.harness import ROOT, env_for, free_endpoints, free_port, run_cli, traindash_cmd, wait_for
from traindash.query import CollectorUnavailable, QueryClient
from traindash.ui.processes import collector_answers, http_ok


def _episodes(query: str) -> int:
    try:
        with QueryClient(query, timeout=2) as client:
            return int(client.query("SELECT count(*) FROM episodes").column(0)[0].as_py())
    except CollectorUnavailable:
        return 0


def test_dashboard_demo_runs_everything_and_stops_its_children(tmp_path: Path) -> None:
    ep = free_endpoints()
    port = free_port()
    env = env_for(ep, tmp_path / "td.duckdb")
    proc = subprocess.Popen(
        traindash_cmd(
            "dashboard",
            "--demo",
            "--trainers",
            "1",
            "--interval",
            "0.05",
            "--port",
            str(port),
            "--update-interval",
            "500",
            "--logs",
            str(tmp_path / "logs"),
        ),
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: proc.poll() is not None or http_ok(f"http://127.0.0.1:{port}/sql"),
            90,
            "the dashboard page",
        )
        assert proc.poll() is None
        wait_for(lambda: _episodes(ep.query) > 5, 60, "demo episodes in the collector")
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 3  # collector, ui, demo (+ its trainer, + alerts)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert f"http://127.0.0.1:{port}/" in out
    psutil.wait_procs(children, timeout=10)
    assert not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children)
    assert not collector_answers(ep.query)


def test_ui_refuses_a_bad_theme_in_one_line(tmp_path: Path) -> None:
    result = run_cli("ui", "--theme", "neon", env=env_for(free_endpoints(), tmp_path / "td.duckdb"))
    assert result.returncode != 0
    assert "invalid choice: 'neon'" in result.stderr
    result = run_cli(
        "ui",
        "--update-interval",
        "5",
        "--port",
        str(free_port()),
        env=env_for(free_endpoints(), tmp_path / "td.duckdb"),
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "traindash ui: error: --update-interval must be at least 50 ms"
    )

"""`traindash runs|leaderboard|compare|export` and `--config` against a real collector."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.harness import ROOT, CollectorProcess, run_cli
from traindash.producer import ExperimentTracker

EXAMPLE_CONFIG = ROOT / "config" / "neural_config.example.json"


@pytest.fixture
def two_runs(collector: CollectorProcess, tmp_path: Path) -> tuple[str, str]:
    with ExperimentTracker(
        str(tmp_path / "exp"), config=collector.producer_config(), db=collector.db
    ) as tracker:
        ids = []
        for name, scale in (("low", 1.0), ("high", 2.0)):
            exp_id = tracker.create_experiment(name, {"lr": scale / 1000}, tags=["cli"])
            for ep in range(10):
                tracker.log_result(exp_id, episode=ep, profit=scale * ep, sharpe=scale)
            tracker.logger(exp_id).log_model_metrics(0.5, q_values=[1.0, 2.0])
            tracker.complete_experiment(exp_id)
            ids.append(exp_id)
    return ids[0], ids[1]


def test_runs_and_leaderboard(collector: CollectorProcess, two_runs: tuple[str, str]) -> None:
    low, high = two_runs
    out = run_cli("runs", env=collector.env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:4] == ["exp_id", "experiment", "status", "started_at"]
    assert high in out.stdout and low in out.stdout and "(2 rows)" in out.stdout
    board = run_cli("leaderboard", "--metric", "profit", "--top", "1", env=collector.env)
    assert board.returncode == 0, board.stderr
    assert high in board.stdout and low not in board.stdout and "best_profit" in board.stdout
    as_json = run_cli("leaderboard", "--format", "json", env=collector.env)
    rows = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [r["exp_id"] for r in rows] == [high, low] and rows[0]["best_profit"] == 18.0
    bad = run_cli("leaderboard", "--metric", "nope", env=collector.env)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1
    assert "unknown metric 'nope'" in bad.stderr


def test_compare(collector: CollectorProcess, two_runs: tuple[str, str]) -> None:
    low, high = two_runs
    out = run_cli("compare", low, high, env=collector.env)
    assert out.returncode == 0, out.stderr
    assert "metric" in out.stdout.splitlines()[0] and "hp" not in out.stdout.splitlines()[0]
    assert "lr" in out.stdout
    as_csv = run_cli("compare", low, high, "--metric", "profit", "--format", "csv", env=collector.env)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [r["exp_id"] for r in rows] == [low, high] and float(rows[1]["profit_best"]) == 18.0
    missing = run_cli("compare", low, "nope", env=collector.env)
    assert missing.returncode == 1 and "no experiment 'nope'" in missing.stderr


def test_export_formats(collector: CollectorProcess, two_runs: tuple[str, str], tmp_path: Path) -> None:
    low, high = two_runs
    out = run_cli(
        "export",
        "--format",
        "parquet",
        "--out",
        str(tmp_path / "e.parquet"),
        "--run",
        high,
        env=collector.env,
    )
    assert out.returncode == 0, out.stderr
    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 10 and set(table.column("run_id").to_pylist()) == {high}
    js = run_cli("export", "--format", "json", "--table", "model_metrics", env=collector.env)
    rows = [json.loads(line) for line in js.stdout.splitlines()]
    assert len(rows) == 2 and rows[0]["q_values"] == [1.0, 2.0]
    run_cli("export", "--format", "csv", "--out", str(tmp_path / "e.csv"), env=collector.env)
    with open(tmp_path / "e.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 20
    bad = run_cli("export", "--run", "nope", env=collector.env)
    assert bad.returncode == 1 and "no run nope" in bad.stderr


def test_help_of_each_command(collector: CollectorProcess) -> None:
    for name in ("runs", "leaderboard", "compare", "export"):
        out = run_cli(name, "--help", env=collector.env)
        assert out.returncode == 0 and "--config" in out.stdout and "--db" in out.stdout, name


def test_config_file_names_the_collector(
    collector: CollectorProcess, two_runs: tuple[str, str], tmp_path: Path
) -> None:
    """`--config` with the example file's `collector` block pointing at this collector."""
    doc = json.loads(EXAMPLE_CONFIG.read_text())
    block = doc["training_dashboard"]["collector"]
    assert set(block) == {"db", "ingest", "rows", "query"}
    block.update(
        db=str(collector.db),
        ingest=collector.endpoints.ingest,
        rows=collector.endpoints.rows,
        query=collector.endpoints.query,
    )
    path = tmp_path / "neural_config.json"
    path.write_text(json.dumps(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDASH_")}
    out = run_cli(
        "sql", "SELECT count(*) AS n FROM episodes", "--config", str(path), "--format", "csv", env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["n", "20"]
    # with the collector stopped, --config's db is read directly
    collector.stop()
    out = run_cli("leaderboard", "--config", str(path), "--timeout", "0.3", "--format", "csv", env=env)
    assert out.returncode == 0, out.stderr
    assert two_runs[1] in out.stdout.splitlines()[1]


def test_every_service_takes_the_config_file(tmp_path: Path) -> None:
    """The collector started with only `--config` binds the endpoints and opens the db it names."""
    from tests.harness import free_endpoints, traindash_cmd, wait_for
    from traindash.query import collector_answers

    endpoints = free_endpoints()
    doc = json.loads(EXAMPLE_CONFIG.read_text())
    doc["training_dashboard"]["collector"] = {
        "db": str(tmp_path / "from_config.duckdb"),
        "ingest": endpoints.ingest,
        "rows": endpoints.rows,
        "query": endpoints.query,
    }
    path = tmp_path / "neural_config.json"
    path.write_text(json.dumps(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINDASH_")}

    import subprocess

    with open(tmp_path / "collector.log", "wb") as log:
        proc = subprocess.Popen(
            traindash_cmd("collector", "--config", str(path)),
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(lambda: collector_answers(endpoints.query), 30, "the collector named by the config file")
        assert (tmp_path / "from_config.duckdb").exists()
    finally:
        proc.terminate()
        proc.wait(30)
    for name in ("collector", "ui", "alerts", "dashboard", "sql", "runs", "leaderboard", "compare", "export"):
        out = run_cli(name, "--help", env=env)
        assert out.returncode == 0 and "--config" in out.stdout, name

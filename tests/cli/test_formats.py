"""Every command that prints a table offers --format json: one JSON object per line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness import CollectorProcess, run_cli, wait_for
from traindash.producer import MetricsLogger


def test_every_table_command_prints_json_lines(collector: CollectorProcess, tmp_path: Path) -> None:
    with MetricsLogger(
        "fmt", output_dir=str(tmp_path / "logs"), config=collector.producer_config()
    ) as logger:
        for e in range(1, 6):
            logger.log_episode(e, profit=float(e))
        run_id = logger.run_id
    wait_for(lambda: collector.scalar("SELECT count(*) FROM episodes") == 5, 30, "the episodes")
    commands = {
        "sql": ["sql", "SELECT episode, profit FROM episodes ORDER BY episode"],
        "runs": ["runs"],
        "leaderboard": ["leaderboard"],
        "compare": ["compare", run_id],
        "status": ["status"],
        "export": ["export", "--run", run_id],
    }
    for name, args in commands.items():
        out = run_cli(*args, "--format", "json", env=collector.env)
        assert out.returncode == 0, f"{name}: {out.stderr}"
        lines = [line for line in out.stdout.splitlines() if line.strip()]
        assert lines, f"{name} printed nothing"
        for line in lines:
            assert isinstance(json.loads(line), dict), f"{name}: {line!r} is not a JSON object"
    status = [
        json.loads(line)
        for line in run_cli("status", "--format", "json", env=collector.env).stdout.splitlines()
    ]
    assert {row["section"] for row in status} >= {"rows", "runs"}

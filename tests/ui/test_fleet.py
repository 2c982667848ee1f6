"""The fleet table: runs with their streams folded below, counts by state, a health grid."""

from __future__ import annotations

import re

from traindash.ui.fleet import add_streams, fleet_html, state_counts

NOW = 1_000_000.0


def streams(n: int, lost: int = 0) -> list[dict]:
    return [
        {
            "run_id": "big",
            "stream": f"env_runner_{i}-{100 + i}",
            "worker": f"env_runner_{i}",
            "host": f"node-{i % 4}",
            "pid": 100 + i,
            "status": "lost" if i < lost else "running",
            "last_seen": NOW - 1,
            "episodes": 10,
            "recent": 6,
        }
        for i in range(n)
    ]


def test_a_run_with_120_streams_is_one_row_a_grid_and_a_folded_table() -> None:
    runs = [
        {"run_id": "big", "name": "ppo <big>", "status": "running", "episodes": 1200, "recent": 720},
        {"run_id": "solo", "name": "solo", "status": "finished", "episodes": 5, "recent": 0},
    ]
    add_streams(runs, streams(120, lost=3))
    out = fleet_html(runs, now=NOW)
    assert "ppo &lt;big&gt;" in out  # escaped
    assert out.count('<tr class="td-streams">') == 1  # the one-stream run has no block
    assert "120 streams: 117 running · 3 lost" in out
    assert "<details>" in out and "<details open" not in out  # folded by default
    grid = re.search(r'<div class="td-grid">(.*?)</div>', out).group(1)
    assert grid.count("<span") == 120
    assert grid.count('class="lvl-bad"') == 3 and grid.count('class="lvl-good"') == 117
    assert 'title="env_runner_0 @ node-0: lost"' in grid
    assert out.count("env_runner_119") >= 2  # in the grid's title and the stream table
    assert "<details open>" in fleet_html(runs, now=NOW, open_streams=True)


def test_state_counts_live_states_first() -> None:
    assert state_counts([{"status": s} for s in ["finished", "lost", "running", "stalled", "running"]]) == (
        "2 running · 1 stalled · 1 lost · 1 finished"
    )


def test_no_runs() -> None:
    assert "no trainer has connected yet" in fleet_html([])

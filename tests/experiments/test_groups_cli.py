"""`traindash compare --group-by ...` against runs logged through real MetricsLoggers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import CollectorProcess, run_cli, wait_for
from traindash.producer import MetricsLogger

SEEDS = 3
GROUPS = {0.001: ("baseline", 1.0), 0.01: ("new", 2.0)}  # lr -> (tag, slope of the profit)


def _episodes(seed: int) -> int:
    return 20 + 5 * seed


@pytest.fixture
def seeds(collector: CollectorProcess, tmp_path: Path) -> CollectorProcess:
    for lr, (tag, slope) in GROUPS.items():
        for seed in range(SEEDS):
            logger = MetricsLogger(
                "sweep",
                output_dir=str(tmp_path / f"{lr}-{seed}"),
                name=f"{tag}-{seed}",
                hyperparameters={"lr": lr, "gamma": 0.99, "random_seed": seed},
                tags=[tag],
                config=collector.producer_config(),
            )
            for ep in range(1, _episodes(seed) + 1):
                logger.log_episode(ep, profit=slope * ep + seed, env_step=ep * (50 + seed))
            logger.close()
    total = sum(_episodes(s) for s in range(SEEDS)) * len(GROUPS)
    wait_for(lambda: collector.scalar("SELECT count(*) FROM episodes") >= total, 30, "episodes committed")
    return collector


def _json(*args: str, env: dict[str, str]) -> list[dict]:
    out = run_cli("compare", *args, "--format", "json", env=env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_the_group_table(seeds: CollectorProcess) -> None:
    out = run_cli("compare", "--group-by", "lr", env=seeds.env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("metric profit against episode;")
    assert lines[1].split()[:4] == ["group", "N", "running", "episode_final"]
    rows = {line.split()[0]: line.split() for line in lines[3:5]}
    assert rows["lr=0.001"][1:4] == ["3", "0", "20"] and rows["lr=0.01"][1:4] == ["3", "0", "20"]
    assert "probability of improvement, P(X > Y)" in out.stdout
    assert "lr=0.001  lr=0.01" in out.stdout  # the pair's row


def test_json_rows_and_the_curves(seeds: CollectorProcess) -> None:
    rows = _json("--group-by", "lr", env=seeds.env)
    assert [(r["group"], r["n"], r["metric"], r["x_final"]) for r in rows] == [
        ("lr=0.001", 3, "profit", 20.0),
        ("lr=0.01", 3, "profit", 20.0),
    ]
    for r, slope in zip(rows, (1.0, 2.0), strict=True):
        # a final score: the mean of the run's curve at the grid points in the last 10 % (19, 20)
        assert r["iqm"] == pytest.approx(slope * 19.5 + 1, rel=1e-9)
        assert r["iqm_low"] <= r["iqm"] <= r["iqm_high"]
    (pair,) = _json("--group-by", "lr", "--show", "pairs", env=seeds.env)
    assert (pair["x"], pair["y"], pair["probability"]) == ("lr=0.001", "lr=0.01", 0.0)
    curves = _json(
        "--group-by", "tag", "--x", "env_step", "--stat", "mean", "--show", "curves", env=seeds.env
    )
    assert {c["group"] for c in curves} == {"baseline", "new"}
    # seed s logs env_step = episode * (50 + s): every seed has reached 52 .. 1000 (seed 0's last)
    for group in ("baseline", "new"):
        xs = [c["x"] for c in curves if c["group"] == group]
        assert min(xs) == 52 and max(xs) == pytest.approx(1000) and max(xs) <= 1000
    runs = _json("--group-by", "lr", "--show", "runs", env=seeds.env)
    assert len(runs) == 2 * SEEDS and {r["x_max"] for r in runs} == {20.0, 25.0, 30.0}


def test_the_file_answers_the_same_without_a_collector(seeds: CollectorProcess) -> None:
    live = _json("--group-by", "lr", env=seeds.env)
    seeds.stop()
    assert _json("--group-by", "lr", "--timeout", "0.3", env=seeds.env) == live


def test_user_errors_are_one_line(seeds: CollectorProcess) -> None:
    for args, message in (
        (("--group-by", "lr", "--metric", "nope"), "no episodes column 'nope'"),
        ((), "name the runs to compare, or compare groups of runs with --group-by"),
        (("--group-by", "lr", "--metric", "profit", "--metric", "sharpe"), "one metric at a time"),
    ):
        out = run_cli("compare", *args, env=seeds.env)
        assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert message in out.stderr

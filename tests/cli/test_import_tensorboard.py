"""traindash import tensorboard: real event files from a real SummaryWriter, imported twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.harness import CollectorProcess, run_cli

tensorboardX = pytest.importorskip("tensorboardX")
pytest.importorskip("tensorboard")

BASE = 1_767_225_600.0  # 2026-01-01, wall times set explicitly so they can be checked


def write_logdir(root: Path) -> dict[str, list[tuple[str, int, float, float]]]:
    """Two runs of event files; what each holds as (tag, step, wall_time, value)."""
    expected: dict[str, list[tuple[str, int, float, float]]] = {}
    for run, scale in (("ppo_seed1", 1.0), ("ppo_seed2", 2.0)):
        writer = tensorboardX.SummaryWriter(str(root / run))
        rows = []
        for step in range(0, 50, 5):
            for tag, value in (
                ("losses/value_loss", scale / (step + 1)),
                ("charts/episodic_return", scale * step),
            ):
                wall = BASE + step + (0.25 if tag.startswith("charts") else 0.0)
                writer.add_scalar(tag, value, global_step=step, walltime=wall)
                rows.append((tag, step, wall, value))
        writer.add_histogram("weights/fc1", [0.1, 0.2, 0.2, 0.9] * 5, global_step=10, walltime=BASE + 10)
        writer.add_text("notes", "first try", global_step=0, walltime=BASE)
        if run == "ppo_seed1":  # tensorboardX writes hparams as a run of their own, in a subfolder
            writer.add_hparams({"lr": 3e-4, "algo": "ppo"}, {"hparam/return": 42.0}, name="hparams")
        writer.close()
        expected[run] = rows
    return expected


def test_import_keeps_every_scalar_with_its_step_and_wall_time_and_twice_changes_nothing(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    logdir = tmp_path / "tb_logs"
    expected = write_logdir(logdir)
    first = run_cli("import", "tensorboard", str(logdir), env=collector.env, timeout=180)
    assert first.returncode == 0, first.stderr
    assert "3 run(s) imported" in first.stdout and "[3/3]" in first.stderr
    runs = {r["name"]: r["run_id"] for r in collector.query("SELECT name, run_id FROM runs").to_pylist()}
    assert set(runs) == {*expected, "ppo_seed1/hparams"}
    hp = collector.query(
        f"SELECT hyperparameters->>'lr' AS lr, hyperparameters->>'algo' AS algo FROM runs "
        f"WHERE run_id = '{runs['ppo_seed1/hparams']}'"
    ).to_pylist()
    assert hp == [{"lr": "0.0003", "algo": "ppo"}]
    for run, rows in expected.items():
        stored = collector.query(
            "SELECT name, step, epoch_us(ts) AS us, value FROM scalars "
            f"WHERE run_id = '{runs[run]}' ORDER BY name, step"
        ).to_pylist()
        want = sorted((tag, step, round(wall * 1e6), value) for tag, step, wall, value in rows)
        got = [(r["name"], r["step"], r["us"], r["value"]) for r in stored]
        assert [g[:3] for g in got] == [w[:3] for w in want]
        # event files hold float32 values
        assert all(g[3] == pytest.approx(w[3], rel=1e-6) for g, w in zip(got, want, strict=True))
    hist = collector.query(
        "SELECT count, min, max FROM summaries WHERE kind = 'histogram' AND name = 'weights/fc1'"
    ).to_pylist()
    assert hist == [{"count": 20, "min": pytest.approx(0.1), "max": pytest.approx(0.9)}] * 2
    texts = collector.query("SELECT text FROM summaries WHERE kind = 'text'").column(0).to_pylist()
    assert len(texts) == 2 and all("first try" in t for t in texts)

    counts = (
        "SELECT (SELECT count(*) FROM scalars), (SELECT count(*) FROM summaries), (SELECT count(*) FROM runs)"
    )
    before = collector.query(counts).to_pylist()
    again = run_cli("import", "tensorboard", str(logdir), env=collector.env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "0 run(s) imported, 3 already there" in again.stdout
    assert collector.query(counts).to_pylist() == before


def test_import_says_what_is_wrong(collector: CollectorProcess, tmp_path: Path) -> None:
    empty = run_cli("import", "tensorboard", str(tmp_path), env=collector.env)
    assert empty.returncode == 1 and "no TensorBoard event files" in empty.stderr
    missing = run_cli("import", "tensorboard", str(tmp_path / "nope"), env=collector.env)
    assert missing.returncode == 1 and "is not a directory" in missing.stderr

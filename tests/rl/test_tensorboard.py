"""The TensorBoard-compatible writer, and patch() under Stable-Baselines3's own TensorBoard logging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.harness import CollectorProcess
from traindash.producer import MetricsLogger
from traindash.producer.integrations import tensorboard as td_tb
from traindash.producer.integrations.tensorboard import SummaryWriter


def test_writer_methods_land_in_their_tables(collector: CollectorProcess, tmp_path) -> None:
    w = SummaryWriter(
        str(tmp_path / "runs" / "cleanrl_ppo"), output_dir=str(tmp_path), config=collector.producer_config()
    )
    w.add_scalar("charts/episodic_return", 21.0, 128)
    w.add_scalar("losses/value_loss", np.float32(0.5))  # no step: 0, as in TensorBoard
    w.add_scalar("charts/sps", 900, 256, walltime=1_700_000_000.0)
    w.add_scalars("loss", {"actor": 1.0, "critic": 2.0}, 256)
    w.add_histogram("weights/fc1", np.arange(10_000, dtype=np.float32), 256)
    w.add_text("notes", "hello", 3)
    w.add_hparams({"lr": 3e-4, "gamma": 0.99}, {"hparam/return": 21.0})
    w.flush()
    w.close()
    assert w.logger.is_closed()
    scalars = collector.query("SELECT name, step, value, epoch(ts) AS t FROM scalars ORDER BY seq, name")
    rows = [(r["name"], r["step"], r["value"]) for r in scalars.to_pylist()]
    assert rows == [
        ("charts/episodic_return", 128, 21.0),
        ("losses/value_loss", 0, 0.5),
        ("charts/sps", 256, 900.0),
        ("loss/actor", 256, 1.0),
        ("loss/critic", 256, 2.0),
        ("hparam/return", 0, 21.0),
    ]
    assert scalars.to_pylist()[2]["t"] == 1_700_000_000.0
    hist, text = collector.query("SELECT * FROM summaries ORDER BY seq").to_pylist()
    assert (hist["name"], hist["kind"], hist["step"], hist["count"]) == (
        "weights/fc1",
        "histogram",
        256,
        10_000,
    )
    assert (hist["min"], hist["max"], hist["mean"]) == (0.0, 9999.0, 4999.5)
    assert len(hist["values"]) == td_tb.MAX_HISTOGRAM_VALUES and hist["values"][-1] == 9999.0
    assert (text["name"], text["kind"], text["text"], text["step"]) == ("notes", "text", "hello", 3)
    run = collector.query("SELECT experiment, hyperparameters FROM runs").to_pylist()[0]
    assert run["experiment"] == "cleanrl_ppo"
    assert json.loads(run["hyperparameters"]) == {"lr": 3e-4, "gamma": 0.99}


def _event_scalars(logdir: Path) -> set[tuple[str, int, float]]:
    """Every scalar in the TensorBoard event files under ``logdir``: (tag, step, value)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    out = set()
    for events in logdir.rglob("events.out.tfevents.*"):
        ea = EventAccumulator(str(events.parent), size_guidance={"scalars": 0, "tensors": 0})
        ea.Reload()
        for tag in ea.Tags()["scalars"]:
            out |= {(tag, e.step, round(float(e.value), 4)) for e in ea.Scalars(tag)}
        for tag in ea.Tags()["tensors"]:
            for e in ea.Tensors(tag):
                value = tensor_util.make_ndarray(e.tensor_proto)
                if value.size == 1:
                    out.add((tag, e.step, round(float(value.item()), 4)))
    return out


def test_patch_mirrors_every_scalar_sb3_writes_to_tensorboard(collector: CollectorProcess, tmp_path) -> None:
    sb3 = pytest.importorskip("stable_baselines3")
    pytest.importorskip("tensorboard")
    logger = MetricsLogger("sb3_tb", output_dir=str(tmp_path), config=collector.producer_config())
    assert "torch.utils.tensorboard" in td_tb.patch(logger)
    try:
        model = sb3.PPO(
            "MlpPolicy",
            "CartPole-v1",
            n_steps=128,
            batch_size=64,
            n_epochs=2,
            seed=0,
            device="cpu",
            tensorboard_log=str(tmp_path / "tb"),
        )
        model.learn(total_timesteps=1024)
    finally:
        td_tb.unpatch()
    assert logger.flush(timeout=30)
    logger.close()
    written = _event_scalars(tmp_path / "tb")
    assert len({tag for tag, _, _ in written}) >= 8 and any(t.startswith("train/") for t, _, _ in written)
    stored = {
        (r["name"], r["step"], round(r["value"], 4))
        for r in collector.query("SELECT name, step, value::FLOAT::DOUBLE AS value FROM scalars").to_pylist()
    }
    assert stored == written


def test_patch_covers_tensorboardx_and_each_writer_opens_its_own_run(
    collector: CollectorProcess, tmp_path
) -> None:
    tbx = pytest.importorskip("tensorboardX")
    assert "tensorboardX" in td_tb.patch(output_dir=str(tmp_path), config=collector.producer_config())
    try:
        w = tbx.SummaryWriter(str(tmp_path / "tbx" / "dqn_run"))
        w.add_scalar("charts/epsilon", 0.5, 10)
        w.add_scalars("q", {"mean": 1.0, "max": 3.0}, 10)
        w.close()
    finally:
        td_tb.unpatch()
    assert not hasattr(tbx.SummaryWriter.add_scalar, "__wrapped__")  # unpatched
    rows = collector.query("SELECT name, step, value FROM scalars ORDER BY seq, name").to_pylist()
    assert [(r["name"], r["step"], r["value"]) for r in rows] == [
        ("charts/epsilon", 10, 0.5),
        ("q/max", 10, 3.0),
        ("q/mean", 10, 1.0),
    ]
    assert collector.scalar("SELECT experiment FROM runs") == "dqn_run"
    assert collector.scalar("SELECT status FROM runs") == "finished"

"""RLlib and Ray Tune on a local Ray instance publish into one collector (slow: Ray starts)."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ray.rllib.algorithms.ppo import PPOConfig  # noqa: E402

from tests.harness import CollectorProcess, wait_for  # noqa: E402
from traindash.producer.integrations.ray import (  # noqa: E402
    TraindashLoggerCallback,
    close_streams,
    traindash_callbacks,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def ray_env(stopped_collector: CollectorProcess, tmp_path: Path) -> Iterator[CollectorProcess]:
    """A collector with short liveness intervals and a local Ray whose workers point at it."""
    c = stopped_collector
    c.extra_env.update(TRAINDASH_STALL_AFTER="2", TRAINDASH_LOST_AFTER="4")
    c.start()
    env = {k: v for k, v in c.env.items() if k.startswith("TRAINDASH_")}
    env["TRAINDASH_RESEND_AFTER"] = "0.5"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={"env_vars": env, "working_dir": None},
        _temp_dir=str(Path("/tmp") / f"ray-td-{os.getpid()}"),
    )
    try:
        yield c
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def ppo(tmp_path: Path, run_id: str, restart: bool = False) -> PPOConfig:
    return (
        PPOConfig()
        .environment("CartPole-v1")
        .env_runners(num_env_runners=2, rollout_fragment_length=50, num_envs_per_env_runner=1)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
        .fault_tolerance(restart_failed_env_runners=restart)
        .callbacks(traindash_callbacks(run_id, experiment="rllib-test", output_dir=str(tmp_path / "spool")))
    )


def test_rllib_ppo_two_env_runners_one_run_a_stream_each(ray_env: CollectorProcess, tmp_path: Path) -> None:
    c = ray_env
    algo = ppo(tmp_path, "ppo-run").build_algo()
    try:
        reported = 0
        for _ in range(3):
            result = algo.train()
            reported += int(result["env_runners"]["num_episodes"])
        close_streams(algo)
    finally:
        algo.stop()
    assert reported > 0
    per_worker = c.query(
        "SELECT stream, worker, count(*) AS n, count(DISTINCT seq) AS d FROM episodes "
        "WHERE run_id = 'ppo-run' GROUP BY ALL ORDER BY worker"
    ).to_pylist()
    assert [r["worker"] for r in per_worker] == ["env_runner_1", "env_runner_2"], per_worker
    assert all(r["n"] == r["d"] for r in per_worker)
    assert sum(r["n"] for r in per_worker) == reported
    streams = c.query("SELECT stream, worker, status, pid FROM streams WHERE run_id = 'ppo-run'").to_pylist()
    assert {s["worker"] for s in streams} == {"driver", "env_runner_1", "env_runner_2"}, streams
    assert all(s["status"] == "finished" for s in streams), streams
    assert c.scalar("SELECT count(*) FROM runs") == 1
    assert c.scalar("SELECT status FROM runs WHERE run_id = 'ppo-run'") == "finished"
    names = {
        r["name"] for r in c.query("SELECT DISTINCT name FROM scalars WHERE run_id = 'ppo-run'").to_pylist()
    }
    assert any(n.startswith("learners/") and n.endswith("loss") for n in names), sorted(names)[:50]
    assert c.scalar("SELECT max(step) FROM scalars WHERE run_id = 'ppo-run'") == 3
    hp = json.loads(c.scalar("SELECT hyperparameters FROM runs WHERE run_id = 'ppo-run'"))
    assert hp["_train_batch_size_per_learner"] == 200 and hp["minibatch_size"] == 100


def test_rllib_env_runner_sigkilled_is_restarted_as_a_new_stream(
    ray_env: CollectorProcess, tmp_path: Path
) -> None:
    c = ray_env
    algo = ppo(tmp_path, "fault-run", restart=True).build_algo()
    try:
        algo.train()
        victim = c.query(
            "SELECT stream_key, pid, acked_seq FROM streams WHERE worker = 'env_runner_1'"
        ).to_pylist()[0]
        acked_rows = c.scalar(
            f"SELECT count(*) FROM episodes WHERE stream = '{victim['stream_key'].split('#', 1)[1]}' "
            f"AND seq <= {victim['acked_seq']}"
        )
        os.kill(victim["pid"], signal.SIGKILL)
        wait_for(
            lambda: (
                c.scalar(f"SELECT status FROM streams WHERE stream_key = '{victim['stream_key']}'") == "lost"
            ),
            60,
            "the killed actor's stream to be lost",
            interval=0.2,
        )
        for _ in range(3):
            algo.train()
            if c.scalar("SELECT count(*) FROM streams WHERE worker = 'env_runner_1'") >= 2:
                break
        assert c.scalar("SELECT status FROM runs WHERE run_id = 'fault-run'") == "running"
        close_streams(algo)
    finally:
        algo.stop()
    workers = c.query(
        "SELECT worker, status FROM streams WHERE worker = 'env_runner_1' ORDER BY started_at"
    ).to_pylist()
    assert [w["status"] for w in workers] == ["lost", "finished"], workers
    stream = victim["stream_key"].split("#", 1)[1]
    assert (
        c.scalar(f"SELECT count(*) FROM episodes WHERE stream = '{stream}' AND seq <= {victim['acked_seq']}")
        == acked_rows
    )
    assert c.scalar("SELECT count(*) - count(DISTINCT (stream, seq)) FROM episodes") == 0


def test_tune_two_trials_two_runs_with_their_configs(ray_env: CollectorProcess, tmp_path: Path) -> None:
    from ray import tune

    def trainable(config: dict) -> None:
        for i in range(3):
            tune.report({"score": config["lr"] * (i + 1), "loss": 1.0 / (i + 1)})

    c = ray_env
    tuner = tune.Tuner(
        trainable,
        param_space={"lr": tune.grid_search([0.1, 0.2]), "layers": 2},
        run_config=tune.RunConfig(
            storage_path=str(tmp_path / "tune"),
            callbacks=[TraindashLoggerCallback("tune-test", output_dir=str(tmp_path / "spool"))],
            verbose=0,
        ),
        tune_config=tune.TuneConfig(max_concurrent_trials=1),
    )
    results = tuner.fit()
    assert not results.errors
    runs = c.query("SELECT run_id, hyperparameters, status FROM runs ORDER BY run_id").to_pylist()
    assert len(runs) == 2, runs
    assert sorted(json.loads(r["hyperparameters"])["lr"] for r in runs) == [0.1, 0.2]
    assert all(json.loads(r["hyperparameters"])["layers"] == 2 for r in runs)
    assert all(r["status"] == "finished" for r in runs)
    rows = c.query(
        "SELECT run_id, max(step) AS last, count(*) AS n FROM scalars WHERE name = 'score' GROUP BY run_id"
    ).to_pylist()
    assert len(rows) == 2 and all(r["last"] == 3 and r["n"] == 3 for r in rows), rows

"""A short real Stable-Baselines3 run streaming into a real collector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import CollectorProcess
from traindash.producer import MetricsLogger

sb3 = pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import SubprocVecEnv  # noqa: E402

from traindash.producer.integrations.sb3 import TraindashCallback, TraindashOutputFormat  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread() -> None:
    torch.set_num_threads(1)  # the machine is shared; CartPole needs no more


def test_ppo_with_subprocess_workers(collector: CollectorProcess, tmp_path: Path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        model = sb3.PPO("MlpPolicy", env, n_steps=256, batch_size=128, n_epochs=2, seed=0, device="cpu")
        callback = TraindashCallback(
            experiment_name="ppo_cartpole",
            output_dir=str(tmp_path),
            config=collector.producer_config(),
            tags=["sb3", "test"],
        )
        model.learn(total_timesteps=2048, callback=callback)
    finally:
        env.close()
    run_id = callback.run_id
    assert callback.metrics_logger.is_closed()
    where = f"WHERE run_id = '{run_id}'"
    run = collector.query(f"SELECT * FROM runs {where}").to_pylist()[0]
    assert run["status"] == "finished" and run["experiment"] == "ppo_cartpole"
    hp = json.loads(run["hyperparameters"])
    assert hp["algorithm"] == "PPO" and hp["n_steps"] == 256 and hp["env_id"] == "CartPole-v1"
    assert hp["env_class"] == "SubprocVecEnv" and run["tags"] == ["sb3", "test"]
    episodes = collector.query(f"SELECT * FROM episodes {where} ORDER BY seq").to_pylist()
    assert len(episodes) == callback.episodes > 20
    assert {e["env_index"] for e in episodes} == {0, 1}  # both workers' episodes
    assert [e["episode"] for e in episodes] == list(range(1, len(episodes) + 1))
    # the return is the run's objective, not profit; CartPole: +1 a step
    assert run["objective"] == "episode_return"
    assert all(e["episode_return"] == e["episode_length"] > 0 and e["profit"] is None for e in episodes)
    steps = [e["env_step"] for e in episodes]
    assert steps == sorted(steps) and 0 < steps[-1] <= 2048
    assert all(e["terminated"] != e["truncated"] for e in episodes)
    assert all(e["learning_rate"] == pytest.approx(3e-4) for e in episodes)
    # 2048 steps / (2 envs x 256) = 4 rollouts, each followed by a training dump
    rows = collector.query(f"SELECT * FROM model_metrics {where} ORDER BY seq").to_pylist()
    assert len(rows) == 4
    for row in rows:
        assert row["loss"] == row["loss"]  # not NaN
        assert row["train_value_loss"] > 0 and row["train_entropy_loss"] < 0
        assert len(row["q_values"]) == 2  # value estimates of the two workers' observations
    assert [r["step"] for r in rows] == sorted(r["step"] for r in rows)


def test_dqn_with_an_existing_logger(collector: CollectorProcess, tmp_path: Path) -> None:
    """A logger of your own spans several learn() calls; DQN's Q-values and epsilon arrive."""
    logger = MetricsLogger("dqn_cartpole", output_dir=str(tmp_path), config=collector.producer_config())
    env = make_vec_env("CartPole-v1", n_envs=1, seed=1)
    model = sb3.DQN(
        "MlpPolicy",
        env,
        learning_starts=200,
        train_freq=4,
        target_update_interval=100,
        seed=1,
        device="cpu",
        exploration_fraction=0.5,
    )
    callback = TraindashCallback(logger)
    model.learn(total_timesteps=600, callback=callback, log_interval=2)
    model.learn(total_timesteps=400, callback=callback, log_interval=2, reset_num_timesteps=False)
    assert not logger.is_closed()
    assert TraindashOutputFormat not in map(type, model.logger.output_formats)
    logger.close()
    where = f"WHERE run_id = '{logger.run_id}'"
    eps = collector.query(f"SELECT epsilon, env_step FROM episodes {where} ORDER BY seq").to_pylist()
    assert len(eps) == callback.episodes > 10
    assert eps[0]["epsilon"] > eps[-1]["epsilon"] >= 0.05
    assert eps[-1]["env_step"] > 600  # the second learn() continued the same run
    rows = collector.query(f"SELECT loss, q_values, step FROM model_metrics {where}").to_pylist()
    assert rows and all(len(r["q_values"]) == 2 for r in rows)  # CartPole: two actions
    assert all(r["loss"] == r["loss"] for r in rows)


@pytest.mark.slow
def test_two_trainer_processes_one_collector(collector: CollectorProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.harness import ROOT

    script = str(ROOT / "examples" / "sb3_cartpole.py")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                script,
                "--algo",
                algo,
                "--timesteps",
                "1024",
                "--experiment",
                "sb3_pair",
                *extra,
            ],
            cwd=tmp_path,
            env=collector.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for algo, extra in (("ppo", ["--no-subproc"]), ("a2c", ["--no-subproc"]))
    ]
    outs = []
    for proc in procs:
        try:
            outs.append(proc.communicate(timeout=90)[0])
        finally:
            proc.kill()
        assert proc.returncode == 0, outs[-1]
    runs = collector.query(
        "SELECT r.run_id, r.status, count(e.seq) AS n, "
        "json_extract_string(r.hyperparameters, '$.algorithm') AS algo "
        "FROM runs r JOIN episodes e USING (run_id) WHERE r.experiment = 'sb3_pair' "
        "GROUP BY ALL ORDER BY algo"
    ).to_pylist()
    assert [r["algo"] for r in runs] == ["A2C", "PPO"]
    for run, out in zip(runs, reversed(outs), strict=True):
        assert run["status"] == "finished" and f"run {run['run_id']}: {run['n']} episodes" in out

"""The vector-env recorder against each sub-environment's own episode count, in every autoreset mode."""

from __future__ import annotations

import functools
from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from gymnasium.wrappers import RecordEpisodeStatistics

from tests.harness import CollectorProcess, free_endpoints
from traindash.producer import MetricsLogger
from traindash.producer.integrations.gymnasium import RecordEpisodes

NUM_ENVS = 4
STEPS = 150


@pytest.fixture(scope="module")
def shared_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """One collector for the module's runs (each test reads its own run_id): fewer start-ups."""
    tmp = tmp_path_factory.mktemp("gym-collector")
    c = CollectorProcess(db=tmp / "td.duckdb", endpoints=free_endpoints(), log_path=tmp / "collector.log")
    try:
        yield c.start()
    finally:
        c.kill()


def _run(envs: RecordEpisodes, mode: AutoresetMode) -> list[tuple[int, int, float, int, bool, bool]]:
    """Random actions for STEPS vector steps; each sub-environment's own count, per episode.

    The reference is gymnasium's single-env RecordEpisodeStatistics inside every
    sub-environment: it counts from that sub-environment's own reset() to its episode's end,
    so it does not depend on any vector autoreset bookkeeping. (The vector
    RecordEpisodeStatistics is not a reference: before Farama-Foundation/Gymnasium PR 1624,
    e.g. in 1.2.2, which ray[rllib] 2.60 pins, it counts SAME_STEP as NEXT_STEP and reports
    every episode after a sub-environment's first one a step short.) Under SAME_STEP the end
    step's info is under ``final_info``, as the step already returns the reset's.
    """
    reported = []
    envs.action_space.seed(1)
    envs.reset(seed=list(range(7, 7 + NUM_ENVS)))  # one per sub-environment, as sync/async take
    for t in range(1, STEPS + 1):
        _, _, term, trunc, info = envs.step(envs.action_space.sample())
        src = info.get("final_info", {}) if mode is AutoresetMode.SAME_STEP else info
        ended = src.get("_sub_episode", np.zeros(NUM_ENVS, dtype=bool))
        assert (ended == (term | trunc)).all()
        for i in np.flatnonzero(ended):
            ep = src["sub_episode"]
            reported.append(
                (t * NUM_ENVS, int(i), float(ep["r"][i]), int(ep["l"][i]), bool(term[i]), bool(trunc[i]))
            )
        if mode is AutoresetMode.DISABLED and (term | trunc).any():
            envs.reset(options={"reset_mask": term | trunc})
    return reported


@pytest.mark.parametrize("vectorization", ["sync", "async"])
@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_recorded_episodes_equal_each_sub_environments_count(
    shared_collector: CollectorProcess, tmp_path, vectorization: str, mode: AutoresetMode
) -> None:
    collector = shared_collector
    env = gym.make_vec(
        "CartPole-v1",
        num_envs=NUM_ENVS,
        vectorization_mode=vectorization,
        vector_kwargs={"autoreset_mode": mode},
        max_episode_steps=18,  # some episodes end truncated, some terminated
        wrappers=[functools.partial(RecordEpisodeStatistics, stats_key="sub_episode")],
    )
    logger = MetricsLogger(
        "gym", output_dir=str(tmp_path), config=collector.producer_config(), objective="episode_return"
    )
    envs = RecordEpisodes(env, logger, worker="w1")
    try:
        reported = _run(envs, mode)
    finally:
        envs.close()
    assert logger.flush(timeout=30)
    logger.close()
    stored = collector.query(
        "SELECT env_step, env_index, episode_return, episode_length, terminated, truncated, worker, "
        f"episode, profit FROM episodes WHERE run_id = '{logger.run_id}' ORDER BY seq"
    ).to_pylist()
    assert len(reported) > 20
    assert {r["truncated"] for r in stored} == {True, False}
    assert [
        (
            r["env_step"],
            r["env_index"],
            r["episode_return"],
            r["episode_length"],
            r["terminated"],
            r["truncated"],
        )
        for r in stored
    ] == reported
    assert [r["episode"] for r in stored] == list(range(1, len(stored) + 1))
    assert {r["worker"] for r in stored} == {"w1"} and {r["profit"] for r in stored} == {None}
    assert (
        collector.scalar(f"SELECT objective FROM runs WHERE run_id = '{logger.run_id}'") == "episode_return"
    )


def test_owns_its_logger_when_none_is_given(collector: CollectorProcess, tmp_path) -> None:
    envs = RecordEpisodes(
        gym.make_vec("CartPole-v1", num_envs=2),
        experiment_name="own",
        output_dir=str(tmp_path),
        config=collector.producer_config(),
    )
    envs.reset(seed=0)
    for _ in range(100):
        envs.step(envs.action_space.sample())
    n = envs.episode_count
    envs.close()
    assert envs.logger.is_closed() and n > 0
    assert collector.scalar("SELECT count(*) FROM episodes") == n
    assert collector.scalar("SELECT max(env_step) FROM episodes") <= 200

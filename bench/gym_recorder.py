"""Cost of recording episodes from a Gymnasium vector env, per vector step.

    .venv/bin/python bench/gym_recorder.py [--quick]

CartPole-v1, 8 sub-environments, sync vector env, random actions drawn up front. Timed:
the bare ``step``; gymnasium's own ``RecordEpisodeStatistics``; traindash's
``RecordEpisodes`` logging every finished episode to a real collector (started here, in a
temporary directory). Each is the median of several rounds, interleaved, in one process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, print_table, row  # noqa: E402

BENCH = "gym_recorder"
NUM_ENVS = 8


def _time(envs, actions) -> float:
    envs.reset(seed=0)
    step = envs.step
    t0 = time.perf_counter()
    for a in actions:
        step(a)
    return (time.perf_counter() - t0) / len(actions) * 1e6


def run(quick: bool = False) -> list[dict]:
    import gymnasium as gym
    from gymnasium.wrappers.vector import RecordEpisodeStatistics

    from tests.harness import CollectorProcess, free_endpoints
    from traindash.producer import MetricsLogger
    from traindash.producer.integrations.gymnasium import RecordEpisodes

    steps, rounds = (2_000, 3) if quick else (10_000, 5)
    with tempfile.TemporaryDirectory(prefix="bench-gym-") as tmp:
        collector = CollectorProcess(
            db=Path(tmp) / "bench.duckdb", endpoints=free_endpoints(), log_path=Path(tmp) / "collector.log"
        ).start()
        try:
            logger = MetricsLogger(
                "bench-gym", output_dir=tmp, config=collector.producer_config(), objective="episode_return"
            )
            bare = gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync")
            stats = RecordEpisodeStatistics(
                gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync")
            )
            ours = RecordEpisodes(
                gym.make_vec("CartPole-v1", num_envs=NUM_ENVS, vectorization_mode="sync"), logger
            )
            bare.action_space.seed(0)
            actions = [bare.action_space.sample() for _ in range(steps)]
            times: dict[str, list[float]] = {"bare": [], "res": [], "ours": []}
            for _ in range(rounds):
                times["bare"].append(_time(bare, actions))
                times["res"].append(_time(stats, actions))
                times["ours"].append(_time(ours, actions))
            episodes = ours.episode_count
            acked = logger.flush(timeout=60)
            logger.close()
            stored = collector.scalar("SELECT count(*) FROM episodes")
            for env in (bare, stats, ours):
                env.close()
        finally:
            collector.stop()
    b, r, o = (median(times[k]) for k in ("bare", "res", "ours"))
    note = f"CartPole-v1 x{NUM_ENVS} sync, {steps:,} vector steps x {rounds} rounds (median)"
    return [
        row(BENCH, "bare vector step", "per vector step", b, "us", note),
        row(BENCH, "gymnasium RecordEpisodeStatistics", "per vector step", r, "us", note),
        row(
            BENCH,
            "traindash RecordEpisodes",
            "per vector step",
            o,
            "us",
            f"{note}; {episodes:,} episodes logged, {stored:,} stored, acked={acked}",
        ),
        row(BENCH, "RecordEpisodeStatistics", "overhead per vector step", r - b, "us", "over the bare step"),
        row(BENCH, "traindash RecordEpisodes", "overhead per vector step", o - b, "us", "over the bare step"),
        row(BENCH, "traindash RecordEpisodes", "overhead / bare step", (o - b) / b, "x", "same run"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, for a smoke check")
    args = parser.parse_args()
    print_table("Recording episodes from a vector env", run(quick=args.quick))


if __name__ == "__main__":
    main()

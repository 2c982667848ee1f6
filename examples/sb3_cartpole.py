"""Train Stable-Baselines3 on CartPole and stream it into traindash (``pip install -e .[sb3]``).

    traindash collector &
    python examples/sb3_cartpole.py --algo ppo --n-envs 4 --timesteps 50000
    python examples/sb3_cartpole.py --algo dqn --timesteps 50000 &   # a second trainer, same collector
    traindash leaderboard --metric profit

Each process is one run; its episodes (from the Monitor wrappers of every SubprocVecEnv worker)
and training metrics (loss, value loss, entropy, Q-values or value estimates) arrive live.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algo", choices=("ppo", "a2c", "dqn"), default="ppo")
    p.add_argument("--timesteps", type=int, default=20_000)
    p.add_argument("--n-envs", type=int, default=2, help="environment workers (default 2)")
    p.add_argument(
        "--subproc",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the workers as SubprocVecEnv processes (default yes)",
    )
    p.add_argument("--experiment", default=None, help="experiment name (default <ALGO>_CartPole-v1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = p.parse_args(argv)

    import stable_baselines3 as sb3
    import torch
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    from traindash.producer.integrations.sb3 import TraindashCallback

    torch.set_num_threads(args.threads)
    n_envs = 1 if args.algo == "dqn" else args.n_envs
    env = make_vec_env(
        "CartPole-v1",
        n_envs=n_envs,
        seed=args.seed,
        vec_env_cls=SubprocVecEnv if args.subproc and n_envs > 1 else DummyVecEnv,
    )
    try:
        algo = {"ppo": sb3.PPO, "a2c": sb3.A2C, "dqn": sb3.DQN}[args.algo]
        kwargs = {"n_steps": 256} if args.algo == "ppo" else {}
        model = algo("MlpPolicy", env, seed=args.seed, device="cpu", **kwargs)
        callback = TraindashCallback(experiment_name=args.experiment, tags=["sb3", args.algo, "cartpole"])
        model.learn(total_timesteps=args.timesteps, callback=callback)
    finally:
        env.close()
    print(f"run {callback.run_id}: {callback.episodes} episodes", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Train a DQN trading agent and watch it in traindash: the guide's full integration, runnable.

A small trading environment (a synthetic price series with momentum, actions flat/long/short)
and a DQN written in numpy (two-layer MLP, experience replay, target network, epsilon-greedy
exploration, a decaying learning-rate schedule, Adam). Each episode's profit, Sharpe ratio,
win rate, drawdown, trades, epsilon and learning rate go through MetricsLogger; each
episode's training loss, Q-values and gradient statistics through ``log_model_metrics``. The
run is an experiment (ExperimentTracker) with its hyperparameters; the dashboard and the alert
system run beside it unless turned off. ``--env cartpole`` trains on Gymnasium's CartPole
instead (``pip install -e .[sb3]``).

    traindash collector &                      # or let the dashboard start one
    python examples/train_with_monitoring.py --episodes 20 --no-dashboard
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from traindash.producer import ExperimentTracker  # noqa: E402


class TradingEnv:
    """Returns follow an AR(1) process, so yesterday's move says something about today's.

    Observation: the last ``window`` returns (in percent) and the current position.
    Actions: 0 flat, 1 long, 2 short. Reward: the position's return minus a trading cost.
    """

    n_actions = 3

    def __init__(self, steps: int = 200, window: int = 8, cost: float = 2e-4, seed: int = 0) -> None:
        self.steps, self.window, self.cost = steps, window, cost
        self.rng = np.random.default_rng(seed)
        self.obs_dim = window + 1

    def reset(self) -> np.ndarray:
        n = self.steps + self.window + 1
        noise = self.rng.normal(0.0, 0.01, n)
        self.returns = np.zeros(n)
        for i in range(1, n):
            self.returns[i] = 0.35 * self.returns[i - 1] + noise[i]
        self.t, self.position, self.equity = self.window, 0, 1.0
        self.peak, self.drawdown, self.step_returns = 1.0, 0.0, []
        self.trades, self.wins, self.trade_pnl = 0, 0, 0.0
        return self._obs()

    def _obs(self) -> np.ndarray:
        recent = self.returns[self.t - self.window : self.t] * 100
        return np.append(recent, self.position).astype(np.float64)

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        new = (0, 1, -1)[action]
        cost = self.cost * abs(new - self.position)
        if new != self.position:
            if self.position != 0:
                self.wins += self.trade_pnl > 0
            if new != 0:
                self.trades += 1
            self.trade_pnl = 0.0
        self.position = new
        ret = self.position * self.returns[self.t] - cost
        self.trade_pnl += ret
        self.equity *= 1 + ret
        self.peak = max(self.peak, self.equity)
        self.drawdown = max(self.drawdown, (self.peak - self.equity) / self.peak)
        self.step_returns.append(ret)
        self.t += 1
        done = self.t >= self.window + self.steps
        return self._obs(), ret * 100, done

    def summary(self, capital: float = 10_000.0) -> dict[str, float]:
        r = np.array(self.step_returns)
        sharpe = float(r.mean() / r.std() * math.sqrt(252)) if r.std() > 0 else 0.0
        closed = self.trades - (self.position != 0)
        return {
            "profit": (self.equity - 1) * capital,
            "sharpe": sharpe,
            "win_rate": self.wins / closed if closed > 0 else 0.0,
            "drawdown": self.drawdown * capital,
            "num_trades": self.trades,
        }


class CartPole:
    """Gymnasium's CartPole behind the same small interface (profit = the episode's return)."""

    def __init__(self, seed: int = 0) -> None:
        import gymnasium as gym

        self.env = gym.make("CartPole-v1")
        self.obs_dim = self.env.observation_space.shape[0]
        self.n_actions = int(self.env.action_space.n)
        self.seed = seed
        self.first = True

    def reset(self) -> np.ndarray:
        obs, _ = self.env.reset(seed=self.seed if self.first else None)
        self.first, self.total = False, 0.0
        return np.asarray(obs, dtype=np.float64)

    def step(self, action: int) -> tuple[np.ndarray, float, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(action)
        self.total += float(reward)
        return np.asarray(obs, dtype=np.float64), float(reward), bool(terminated or truncated)

    def summary(self) -> dict[str, float]:
        return {"profit": self.total, "num_trades": 0}


@dataclass
class Hyper:
    """The DQN's hyperparameters (stored with the experiment)."""

    gamma: float = 0.97
    learning_rate: float = 1e-3
    lr_decay: float = 0.97
    lr_min: float = 1e-4
    epsilon_start: float = 1.0
    epsilon_min: float = 0.05
    epsilon_decay: float = 0.9
    hidden: int = 64
    batch_size: int = 64
    buffer_size: int = 20_000
    target_sync: int = 200
    train_every: int = 2


class DQN:
    """A two-layer MLP Q-network with a target copy, trained with Adam on the Huber TD loss."""

    def __init__(self, obs_dim: int, n_actions: int, hp: Hyper, rng: np.random.Generator) -> None:
        self.hp, self.rng, self.n_actions = hp, rng, n_actions
        self.params = {
            "w1": rng.normal(0, math.sqrt(2 / obs_dim), (obs_dim, hp.hidden)),
            "b1": np.zeros(hp.hidden),
            "w2": rng.normal(0, math.sqrt(1 / hp.hidden), (hp.hidden, n_actions)),
            "b2": np.zeros(n_actions),
        }
        self.target = {k: v.copy() for k, v in self.params.items()}
        self.m = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.updates = 0

    @staticmethod
    def q(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.maximum(x @ params["w1"] + params["b1"], 0.0)
        return h @ params["w2"] + params["b2"], h

    def act(self, obs: np.ndarray, epsilon: float) -> int:
        if self.rng.random() < epsilon:
            return int(self.rng.integers(self.n_actions))
        return int(np.argmax(self.q(self.params, obs[None])[0][0]))

    def train(self, batch: tuple[np.ndarray, ...], lr: float) -> dict[str, Any]:
        s, a, r, s2, done = batch
        q, h = self.q(self.params, s)
        q_next = self.q(self.target, s2)[0].max(axis=1)
        target = r + self.hp.gamma * q_next * (1 - done)
        idx = np.arange(len(a))
        err = q[idx, a] - target
        loss = float(np.mean(np.where(np.abs(err) < 1, 0.5 * err**2, np.abs(err) - 0.5)))
        dq = np.zeros_like(q)
        dq[idx, a] = np.clip(err, -1, 1) / len(a)
        dh = (dq @ self.params["w2"].T) * (h > 0)
        grads = {"w2": h.T @ dq, "b2": dq.sum(0), "w1": s.T @ dh, "b1": dh.sum(0)}
        self.updates += 1
        for k, g in grads.items():
            self.m[k] = 0.9 * self.m[k] + 0.1 * g
            self.v[k] = 0.999 * self.v[k] + 0.001 * g**2
            m_hat = self.m[k] / (1 - 0.9**self.updates)
            v_hat = self.v[k] / (1 - 0.999**self.updates)
            self.params[k] -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        if self.updates % self.hp.target_sync == 0:
            self.target = {k: v.copy() for k, v in self.params.items()}
        flat = np.concatenate([g.ravel() for g in grads.values()])
        return {
            "loss": loss,
            "q": q.max(axis=1),
            "grad_mean": float(flat.mean()),
            "grad_std": float(flat.std()),
        }


class Replay:
    """A ring buffer of transitions."""

    def __init__(self, size: int, obs_dim: int, rng: np.random.Generator) -> None:
        self.s = np.zeros((size, obs_dim))
        self.s2 = np.zeros((size, obs_dim))
        self.a = np.zeros(size, dtype=np.int64)
        self.r = np.zeros(size)
        self.d = np.zeros(size)
        self.size, self.n, self.i, self.rng = size, 0, 0, rng

    def add(self, s: np.ndarray, a: int, r: float, s2: np.ndarray, d: bool) -> None:
        self.s[self.i], self.a[self.i], self.r[self.i], self.s2[self.i], self.d[self.i] = s, a, r, s2, d
        self.i = (self.i + 1) % self.size
        self.n = min(self.n + 1, self.size)

    def sample(self, k: int) -> tuple[np.ndarray, ...]:
        j = self.rng.integers(0, self.n, k)
        return self.s[j], self.a[j], self.r[j], self.s2[j], self.d[j]


def start_dashboard(logger: Any, port: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from traindash.ui import TrainingDashboard
    except ImportError as exc:
        print(f"dashboard unavailable ({exc}); training without it")
        return None
    dashboard = TrainingDashboard(logger, port=port)
    dashboard.start(blocking=False)
    print(f"dashboard: http://localhost:{port}")
    return dashboard


def make_alerts(config_path: str | None, enabled: bool, run_id: str) -> Any:
    if not enabled:
        return None
    try:
        from traindash.alerts import AlertSystem
    except ImportError as exc:
        print(f"alert system unavailable ({exc}); training without it")
        return None
    config: dict[str, Any] = {"enable_alerts": True}
    if config_path:
        block = json.loads(Path(config_path).read_text()).get("training_dashboard", {})
        config = dict(block.get("alerts", config))
    return AlertSystem({**config, "run_id": run_id})


def train(args: argparse.Namespace) -> str:
    rng = np.random.default_rng(args.seed)
    env: Any = CartPole(args.seed) if args.env == "cartpole" else TradingEnv(seed=args.seed)
    hp = Hyper()
    agent = DQN(env.obs_dim, env.n_actions, hp, rng)
    replay = Replay(hp.buffer_size, env.obs_dim, rng)
    tracker = ExperimentTracker(args.experiments_dir)
    exp_id = tracker.create_experiment(
        args.name,
        {**asdict(hp), "env": args.env, "episodes": args.episodes, "seed": args.seed},
        description=f"numpy DQN on {args.env}",
        tags=["dqn", "example", args.env],
    )
    logger = tracker.logger(exp_id)
    dashboard = start_dashboard(logger, args.port, args.dashboard)
    alert_system = make_alerts(args.config, args.alerts, exp_id)
    started, best = time.time(), -math.inf
    print(f"experiment {exp_id}: {args.episodes} episodes on {args.env}")
    try:
        for episode in range(1, args.episodes + 1):
            epsilon = max(hp.epsilon_min, hp.epsilon_start * hp.epsilon_decay ** (episode - 1))
            lr = max(hp.lr_min, hp.learning_rate * hp.lr_decay ** (episode - 1))
            obs, done, steps, results = env.reset(), False, 0, []
            while not done:
                action = agent.act(obs, epsilon)
                nxt, reward, done = env.step(action)
                replay.add(obs, action, reward, nxt, done)
                obs, steps = nxt, steps + 1
                if replay.n >= hp.batch_size and steps % hp.train_every == 0:
                    results.append(agent.train(replay.sample(hp.batch_size), lr))
            summary = env.summary()
            logger.log_episode(episode=episode, epsilon=epsilon, learning_rate=lr, steps=steps, **summary)
            if results:
                last = results[-1]
                logger.log_model_metrics(
                    loss=float(np.mean([r["loss"] for r in results])),
                    q_values=last["q"][:32],
                    gradients={"mean": last["grad_mean"], "std": last["grad_std"]},
                    updates=agent.updates,
                )
            best = max(best, summary["profit"])
            if alert_system is not None and episode % 10 == 0:
                alert_system.check_training_health(
                    latest_episode=logger.get_latest_episode(), recent_history=logger.episode_metrics[-100:]
                )
            if episode % max(1, args.episodes // 10) == 0 or episode == args.episodes:
                print(
                    f"episode {episode:4d}  profit {summary['profit']:9.2f}  epsilon {epsilon:.3f}  "
                    f"lr {lr:.2e}  loss {np.mean([r['loss'] for r in results]) if results else 0:.4f}"
                )
        stats = logger.get_statistics()
        tracker.complete_experiment(
            exp_id, final_metrics={"total_episodes": args.episodes, "best_profit": best}
        )
        if alert_system is not None:
            alert_system.send_training_complete(
                total_episodes=args.episodes,
                best_profit=best,
                best_sharpe=stats.get("best_sharpe", 0.0),
                training_time=time.time() - started,
            )
    finally:
        tracker.close()
        if alert_system is not None:
            alert_system.close()
        if dashboard is not None:
            if args.keep_dashboard:
                input("training done; press Enter to stop the dashboard ")
            dashboard.stop()
    return exp_id


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=200, help="episodes to train (default 200)")
    p.add_argument(
        "--env",
        choices=("trading", "cartpole"),
        default="trading",
        help="trading (numpy only, default) or cartpole (needs gymnasium)",
    )
    p.add_argument("--name", default="dqn_example", help="experiment name (default dqn_example)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--port", type=int, default=8050, help="dashboard port (default 8050)")
    p.add_argument("--no-dashboard", dest="dashboard", action="store_false", help="no dashboard")
    p.add_argument("--no-alerts", dest="alerts", action="store_false", help="no alert system")
    p.add_argument("--keep-dashboard", action="store_true", help="wait for Enter before stopping it")
    p.add_argument("--config", metavar="PATH", help="guide-style JSON config for the alerts block")
    p.add_argument("--experiments-dir", default="experiments")
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error("--episodes must be at least 1")
    exp_id = train(args)
    print(f"done: experiment {exp_id}; try `traindash compare {exp_id}` or `traindash leaderboard`")
    return 0


if __name__ == "__main__":
    sys.exit(main())

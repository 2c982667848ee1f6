"""Simulated RL trading trainers for demos, tests and benchmarks.

The curves look like a DQN learning to trade: profit is a random walk whose drift grows
as the agent learns, epsilon decays, the learning rate follows a step schedule, the loss
decays with noise, and Q-values rise and tighten.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any

from traindash.producer.logger import FROM_CONFIG, MetricsLogger


@dataclass
class DemoAgent:
    """State of one simulated trainer; ``step()`` returns the next episode's metrics."""

    seed: int
    episodes: int = 1000
    episode: int = 0
    equity: float = 0.0
    peak: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.skill = 0.6 + 0.8 * self.rng.random()
        self.lr0 = self.rng.choice([1e-3, 5e-4, 3e-4])
        self.returns: list[float] = []

    def progress(self) -> float:
        horizon = self.episodes if self.episodes > 0 else 2000
        return min(1.0, self.episode / horizon)

    def step(self) -> dict[str, Any]:
        self.episode += 1
        p, rng = self.progress(), self.rng
        drift = (p * 40.0 - 8.0) * self.skill
        profit = drift + rng.gauss(0.0, 60.0 * (1.0 - 0.5 * p))
        self.equity += profit
        self.peak = max(self.peak, self.equity)
        self.returns = (self.returns + [profit])[-30:]
        mean = sum(self.returns) / len(self.returns)
        std = math.sqrt(sum((r - mean) ** 2 for r in self.returns) / len(self.returns)) or 1.0
        win_rate = min(0.95, max(0.05, 0.42 + 0.2 * p * self.skill + rng.gauss(0, 0.05)))
        return {
            "episode": self.episode,
            "profit": profit,
            "sharpe": mean / std * math.sqrt(30),
            "win_rate": win_rate,
            "drawdown": self.peak - self.equity,
            "num_trades": rng.randint(5, 40),
            "epsilon": max(0.01, 0.995**self.episode),
            "learning_rate": self.lr0 * (0.5 ** (self.episode // 250)),
            "portfolio_value": 10_000.0 + self.equity,
        }

    def model_step(self) -> dict[str, Any]:
        p, rng = self.progress(), self.rng
        loss = (5.0 * math.exp(-4.0 * p) + 0.05) * math.exp(rng.gauss(0.0, 0.35))
        q_center = 1.0 + 9.0 * p * self.skill
        q_values = [q_center + rng.gauss(0.0, 2.0 * (1.0 - 0.6 * p)) for _ in range(16)]
        return {
            "loss": loss,
            "q_values": q_values,
            "gradients": {"mean": rng.gauss(0.0, 1e-3), "std": 1e-2 * (1.0 - 0.7 * p) + 1e-4},
        }


def run_trainer(
    index: int,
    episodes: int,
    interval: float,
    experiment: str = "demo",
    seed: int | None = None,
    model_every: int = 5,
    system_interval: float | None = None,
) -> str:
    """One simulated trainer; ``episodes=0`` runs until interrupted. Returns the run_id.

    ``system_interval``: seconds between system-metrics samples (0: none; None: the config's).
    """
    agent = DemoAgent(seed=index if seed is None else seed, episodes=episodes)
    hyper = {
        "learning_rate": agent.lr0,
        "gamma": 0.99,
        "epsilon_decay": 0.995,
        "skill": round(agent.skill, 3),
        "trainer": index,
    }
    logger = MetricsLogger(
        experiment,
        name=f"{experiment}-trainer-{index}",
        hyperparameters=hyper,
        tags=["demo", "dqn"],
        description=f"simulated DQN trading agent #{index}",
        system_metrics_interval=FROM_CONFIG if system_interval is None else system_interval,
    )
    try:
        n = 0
        while episodes <= 0 or n < episodes:
            n += 1
            logger.log_episode(**agent.step())
            if n % model_every == 0:
                logger.log_model_metrics(**agent.model_step())
            if interval > 0:
                time.sleep(interval)
    except KeyboardInterrupt:
        pass
    finally:
        logger.close()
    return logger.run_id

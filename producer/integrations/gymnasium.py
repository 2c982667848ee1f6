"""Gymnasium vector environments: record every finished episode into traindash.

    import gymnasium as gym
    from traindash.producer.integrations.gymnasium import RecordEpisodes

    envs = RecordEpisodes(gym.make_vec("CartPole-v1", num_envs=8), experiment_name="ppo")
    obs, info = envs.reset(seed=0)
    for _ in range(10_000):
        obs, reward, terminated, truncated, info = envs.step(policy(obs))
    envs.close()  # also closes the logger it opened

Each finished episode becomes a row of ``episodes`` with ``episode_return``,
``episode_length``, ``env_step`` (``num_envs`` per vector step, as CleanRL's
``global_step`` and SB3's ``num_timesteps`` count), ``terminated``, ``truncated``,
``env_index`` and ``worker``. Each episode is counted from its sub-environment's reset to
its end in each of the three autoreset modes (``NEXT_STEP``: the step after an episode's
end is the reset step, not counted; ``SAME_STEP``: the end step already carries the reset
observation, so the next step is the new episode's first; ``DISABLED``: the caller resets
done sub-environments with ``reset(options={"reset_mask": ...})``). That is the bookkeeping
of gymnasium 1.4's vector ``RecordEpisodeStatistics``; the one of gymnasium 1.2 (which
ray[rllib] 2.60 pins) counts ``SAME_STEP`` as ``NEXT_STEP``, one step short per episode
after each sub-environment's first (fixed by Farama-Foundation/Gymnasium PR 1624), and
this recorder does not. The work per vector step is a few numpy calls on ``num_envs`` values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper

from traindash.producer.logger import MetricsLogger

__all__ = ["RecordEpisodes"]


class RecordEpisodes(VectorWrapper):
    """A vector-env wrapper that logs every finished episode to a :class:`MetricsLogger`.

    Args:
        env: any ``gymnasium.vector.VectorEnv`` (sync, async or a custom one).
        logger: where episodes go; by default a new ``MetricsLogger(experiment_name,
            objective="episode_return", **logger_kwargs)``, closed by :meth:`close`. A
            logger passed in stays open (ranking by return needs its ``objective`` set).
        experiment_name: the experiment of the logger made here.
        worker: stored in each row's ``worker`` column (a Ray actor, a host); NULL if None.
        env_step: the environment step count to start from (a resumed run).
        logger_kwargs: more arguments for the logger made here.
    """

    def __init__(
        self,
        env: VectorEnv,
        logger: MetricsLogger | None = None,
        *,
        experiment_name: str = "gymnasium",
        worker: str | None = None,
        env_step: int = 0,
        **logger_kwargs: Any,
    ) -> None:
        super().__init__(env)
        self._owns_logger = logger is None
        if logger is None:
            logger_kwargs.setdefault("objective", "episode_return")
            logger = MetricsLogger(experiment_name, **logger_kwargs)
        self.logger = logger
        self.worker = worker
        mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if not isinstance(mode, AutoresetMode):
            raise TypeError(
                f"env.metadata['autoreset_mode'] must be an AutoresetMode, not {type(mode).__name__}"
            )
        self.autoreset_mode = mode
        self.env_step = int(env_step)
        self.episode_count = 0
        n = self.num_envs
        self._returns = np.zeros(n)
        self._lengths = np.zeros(n, dtype=np.int64)
        self._prev_dones = np.zeros(n, dtype=bool)

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset (all sub-environments, or those of ``options["reset_mask"]``) and their tallies.

        ``seed`` may be a list, one seed per sub-environment, as the sync and async vector
        envs take (gymnasium 1.2's ``VectorWrapper.reset`` declares it; 1.4's does not).
        """
        mask = None if options is None else options.get("reset_mask")
        # A copy: gymnasium's vector envs pop ``reset_mask`` from the dict they are given,
        # and wrappers outside this one (RecordEpisodeStatistics) still need to see it.
        obs, info = self.env.reset(
            # VectorEnv.reset's annotation says int | None in every gymnasium version, though
            # SyncVectorEnv and AsyncVectorEnv (and 1.2's VectorWrapper) take a list of seeds.
            seed=seed,  # type: ignore[arg-type]
            options=None if options is None else dict(options),
        )
        if mask is None:
            self._returns[:] = 0.0
            self._lengths[:] = 0
            self._prev_dones[:] = False
        else:
            mask = np.asarray(mask, dtype=bool)
            self._returns[mask] = 0.0
            self._lengths[mask] = 0
            self._prev_dones[mask] = False
        return obs, info

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Step every sub-environment and log the episodes that just ended."""
        obs, rewards, terminations, truncations, infos = self.env.step(actions)
        self.env_step += self.num_envs
        if self.autoreset_mode is AutoresetMode.SAME_STEP:
            self._returns += rewards
            self._lengths += 1
        else:
            # The step after an episode's end only reset that sub-environment (NEXT_STEP),
            # or it was reset by the caller (DISABLED, where reset() cleared the flag).
            prev = self._prev_dones
            if prev.any():
                self._returns = np.where(prev, 0.0, self._returns + rewards)
                self._lengths = np.where(prev, 0, self._lengths + 1)
            else:
                self._returns += rewards
                self._lengths += 1
        dones = np.logical_or(terminations, truncations)
        self._prev_dones = dones
        if dones.any():
            self._record(np.flatnonzero(dones), terminations, truncations)
            if self.autoreset_mode is AutoresetMode.SAME_STEP:
                self._returns[dones] = 0.0
                self._lengths[dones] = 0
        return obs, rewards, terminations, truncations, infos

    def _record(self, done: np.ndarray, terminations: Any, truncations: Any) -> None:
        log = self.logger.log_episode
        extra: dict[str, Any] = {} if self.worker is None else {"worker": self.worker}
        returns, lengths = self._returns[done].tolist(), self._lengths[done].tolist()
        terms, truncs = terminations[done].tolist(), truncations[done].tolist()
        for k, i in enumerate(done.tolist()):
            self.episode_count += 1
            log(
                self.episode_count,
                episode_return=returns[k],
                episode_length=lengths[k],
                env_step=self.env_step,
                terminated=bool(terms[k]),
                truncated=bool(truncs[k]),
                env_index=i,
                **extra,
            )

    def close(self, **kwargs: Any) -> None:
        """Close the environments, and the logger if this wrapper opened it."""
        try:
            self.env.close(**kwargs)
        finally:
            if self._owns_logger:
                self.logger.close()

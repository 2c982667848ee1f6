"""Stable-Baselines3 integration: stream episodes and training metrics into traindash.

    from traindash.producer.integrations.sb3 import TraindashCallback

    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4, vec_env_cls=SubprocVecEnv))
    model.learn(50_000, callback=TraindashCallback(experiment_name="ppo_cartpole"))

* Episodes: every finished episode that a ``Monitor`` wrapper reports (``info["episode"]``,
  as ``make_vec_env`` sets up, in any number of ``SubprocVecEnv`` workers) becomes a row of
  ``episodes``: ``profit`` is the episode's return, plus ``length``, ``env_index``,
  ``timesteps``, the current ``learning_rate`` and (DQN) ``epsilon``, and any numeric
  ``info_keywords`` the Monitor records.
* Training metrics: the callback adds :class:`TraindashOutputFormat` (an SB3 ``KVWriter``) to
  the model's logger, so each ``logger.dump()`` with ``train/*`` values (loss, value_loss,
  entropy_loss, approx_kl, ...) becomes a row of ``model_metrics`` with the Q-values (DQN) or
  value estimates (actor-critic) of the latest observations. The output format works on its
  own too: ``model.set_logger(Logger(None, [TraindashOutputFormat(metrics_logger), ...]))``.

One training process is one run. Several trainer processes (each with its own callback)
publish to the same collector, each under its own ``run_id``.

This module imports SB3 (and torch); ``traindash.producer`` never imports this module, so
it works without them (``pip install "traindash[sb3]"`` adds them).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from traindash import config as tdconfig
from traindash.producer.logger import MetricsLogger
from traindash.producer.packing import EPISODE_FIELDS

__all__ = ["TraindashCallback", "TraindashOutputFormat", "metric_name", "model_hyperparameters"]

MONITOR_KEYS = ("r", "l", "t")
LOSS_KEYS = ("train/loss", "train/critic_loss", "train/value_loss", "train/actor_loss")
HYPERPARAMETERS = (
    "learning_rate",
    "gamma",
    "n_steps",
    "batch_size",
    "n_epochs",
    "gae_lambda",
    "clip_range",
    "ent_coef",
    "vf_coef",
    "max_grad_norm",
    "buffer_size",
    "learning_starts",
    "tau",
    "train_freq",
    "gradient_steps",
    "target_update_interval",
    "exploration_fraction",
    "exploration_initial_eps",
    "exploration_final_eps",
    "n_envs",
    "seed",
)
MAX_Q_VALUES = 256
# names the callback passes itself; a user's metric of the same name gets an ``sb3_`` prefix
EPISODE_ARGS = frozenset(EPISODE_FIELDS) | {"length", "env_index", "timesteps"}
MODEL_ARGS = frozenset({"loss", "q_values", "gradients", "weights", "step", "episode"})
_BAD = re.compile(r"[^A-Za-z0-9_]")


def metric_name(key: str) -> str:
    """An SB3 logger key as a column name: ``train/value_loss`` -> ``train_value_loss``."""
    name = _BAD.sub("_", key).strip("_")[:63] or "value"
    return name if not name[0].isdigit() else f"m_{name}"[:63]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        try:
            return float(value.item())
        except (TypeError, ValueError):
            return None
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return str(value)


def model_hyperparameters(model: Any) -> dict[str, Any]:
    """The common hyperparameters of an SB3 model (those it has), plus algorithm and env."""
    out: dict[str, Any] = {"algorithm": type(model).__name__}
    for key in HYPERPARAMETERS:
        value = getattr(model, key, None)
        if value is not None and not callable(value):
            out[key] = _plain(value)
    env = getattr(model, "env", None)
    if env is None:
        return out
    out["env_class"] = type(env).__name__
    try:
        spec = env.get_attr("spec", indices=[0])[0]
    except Exception:  # an env without a spec, or a worker that cannot answer
        spec = None
    if spec is not None:
        out["env_id"] = spec.id
    return out


def _q_values(model: Any) -> list[float] | None:
    """Q-values (DQN) or value estimates (actor-critic) of the latest observations."""
    obs = getattr(model, "_last_obs", None)
    if obs is None or isinstance(obs, dict):
        return None
    try:
        with torch.no_grad():
            tensor = model.policy.obs_to_tensor(obs)[0]
            if hasattr(model, "q_net"):
                values = model.q_net(tensor)
            elif hasattr(model.policy, "predict_values"):
                values = model.policy.predict_values(tensor)
            else:
                return None
        return values.flatten()[:MAX_Q_VALUES].cpu().numpy().tolist()
    except Exception:  # an odd policy must never break training
        return None


class TraindashOutputFormat(KVWriter):
    """An SB3 logger output format that sends each dump with ``train/*`` values to
    ``metrics_logger.log_model_metrics`` (keys become columns: ``train_value_loss``).

    Args:
        metrics_logger: the run's MetricsLogger.
        model: the SB3 model, to add the Q-values (or value estimates) of its latest
            observations; optional.
    """

    def __init__(self, metrics_logger: MetricsLogger, model: Any = None) -> None:
        self.metrics_logger = metrics_logger
        self.model = model

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
    ) -> None:
        if not any(k.startswith("train/") for k in key_values):
            return
        fields: dict[str, Any] = {}
        for key, value in key_values.items():
            if "traindash" in key_excluded.get(key, ()):
                continue
            number = _number(value)
            if number is not None:
                name = metric_name(key)
                fields[f"sb3_{name}"[:63] if name in MODEL_ARGS else name] = number
        loss = next((fields[metric_name(k)] for k in LOSS_KEYS if metric_name(k) in fields), math.nan)
        fields.pop("train_loss", None)
        q = _q_values(self.model) if self.model is not None else None
        self.metrics_logger.log_model_metrics(loss, q_values=q, step=int(step), **fields)

    def close(self) -> None:
        pass


class TraindashCallback(BaseCallback):
    """Streams an SB3 training run into traindash (see the module docstring).

    Args:
        metrics_logger: log into this run; by default the callback opens a MetricsLogger
            when training starts and closes it when training ends.
        experiment_name: the run's experiment (default ``<algorithm>_<env id>``).
        hyperparameters: stored with the run (default: the model's own).
        tags, description, output_dir, config: passed to the MetricsLogger it opens.
        model_metrics: add the training-metrics output format to the model's logger.
    """

    def __init__(
        self,
        metrics_logger: MetricsLogger | None = None,
        *,
        experiment_name: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str = "",
        output_dir: str = "training_logs",
        config: tdconfig.ProducerConfig | None = None,
        model_metrics: bool = True,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.metrics_logger = metrics_logger
        self._owns_logger = metrics_logger is None
        self.experiment_name = experiment_name
        self.hyperparameters = hyperparameters
        self.tags = tags
        self.description = description
        self.output_dir = output_dir
        self.config = config
        self.model_metrics = model_metrics
        self.episodes = 0
        self._format: Any = None

    @property
    def run_id(self) -> str | None:
        return self.metrics_logger.run_id if self.metrics_logger is not None else None

    def _on_training_start(self) -> None:
        if self.metrics_logger is None or self.metrics_logger.is_closed():
            hp = model_hyperparameters(self.model)
            name = self.experiment_name or f"{hp['algorithm']}_{hp.get('env_id', 'env')}"
            self.metrics_logger = MetricsLogger(
                name,
                output_dir=self.output_dir,
                hyperparameters=self.hyperparameters or hp,
                tags=self.tags or ["sb3", hp["algorithm"].lower()],
                description=self.description,
                config=self.config,
            )
            self._owns_logger = True
        if self.model_metrics and self._format is None:
            self._format = TraindashOutputFormat(self.metrics_logger, self.model)
            self.model.logger.output_formats.append(self._format)

    def _on_step(self) -> bool:
        infos = self.locals.get("infos") or ()
        for index, info in enumerate(infos):
            episode = info.get("episode") if isinstance(info, dict) else None
            if episode:
                self._log_episode(index, episode, info)
        return True

    def _log_episode(self, index: int, episode: dict[str, Any], info: dict[str, Any]) -> None:
        self.episodes += 1
        extra: dict[str, Any] = {}
        for key, value in episode.items():
            number = _number(value)
            if key not in MONITOR_KEYS and number is not None:
                name = metric_name(key)
                extra[f"sb3_{name}"[:63] if name in EPISODE_ARGS else name] = number
        success = _number(info.get("is_success"))
        if success is not None:
            extra["is_success"] = success
        model = self.model
        lr = model.lr_schedule(model._current_progress_remaining) if hasattr(model, "lr_schedule") else 0.0
        assert self.metrics_logger is not None
        self.metrics_logger.log_episode(
            episode=self.episodes,
            profit=float(episode.get("r", math.nan)),
            epsilon=float(getattr(model, "exploration_rate", 0.0)),
            learning_rate=float(lr),
            length=float(episode.get("l", 0)),
            env_index=index,
            timesteps=self.num_timesteps,
            **extra,
        )

    def _on_training_end(self) -> None:
        if self._format is not None:
            # SB3 dumps a training step's values with the next rollout's, so the last
            # training step's values are still waiting in the logger: send them too.
            logger = self.model.logger
            self._format.write(dict(logger.name_to_value), dict(logger.name_to_excluded), self.num_timesteps)
            try:
                self.model.logger.output_formats.remove(self._format)
            except ValueError:
                pass
            self._format = None
        if self._owns_logger and self.metrics_logger is not None:
            self.metrics_logger.close()

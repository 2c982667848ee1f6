"""Ray: RLlib (new API stack) and Ray Tune publish into traindash.

RLlib, one run per algorithm with a stream per process::

    from traindash.producer.integrations.ray import traindash_callbacks, close_streams

    config = PPOConfig().environment("CartPole-v1").callbacks(traindash_callbacks(experiment="ppo"))
    algo = config.build_algo()
    for _ in range(10):
        algo.train()
    close_streams(algo)  # ends every stream cleanly (else they go stalled, then lost)
    algo.stop()

Every EnvRunner actor opens its own :class:`MetricsLogger` stream (``env_runner_<index>-<pid>``)
lazily, inside its process, the first time an episode ends there: the callback object that
Ray pickles holds only the run id and plain settings, never a socket or a logger. Each
finished episode becomes a row of ``episodes`` (``episode_return``, ``episode_length``,
``env_step``: the stream's environment steps so far, ``terminated``, ``truncated``,
``env_index``, ``worker``, ``worker_index``, ``node`` in ``extra``). The driver's stream
(``driver``) carries the algorithm's config as the run's hyperparameters and every numeric
training result (losses, throughput, ``env_runners/*``) as ``scalars`` at
``training_iteration``. A restarted actor has a new pid and so a new stream; the stream of
the one that died goes stalled, then lost, while the run stays running.

Endpoints and CURVE keys come from ``TRAINDASH_*`` in each process's environment (set them
in the job's ``runtime_env``), unless ``config`` is given; see docs/ray.md.

Ray Tune: ``tune.Tuner(..., run_config=RunConfig(callbacks=[TraindashLoggerCallback()]))``
makes one run per trial, with the trial's config as hyperparameters and each reported
result's numbers as scalars at its ``training_iteration``.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import ray
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.tune.logger import LoggerCallback

from traindash.config import ProducerConfig
from traindash.producer.logger import MetricsLogger, new_run_id

__all__ = ["TraindashLoggerCallback", "close_streams", "flat_numbers", "traindash_callbacks"]

DRIVER_STREAM = "driver"

# This process's open streams, keyed by (run_id, stream). Module state, not callback state:
# Ray pickles callbacks to actors, and a logger (a thread, sockets) must never travel.
_streams: dict[tuple[str, str], MetricsLogger] = {}
_lock = threading.Lock()


def flat_numbers(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """``(path/to/key, number)`` for every numeric leaf of a nested result dict."""
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flat_numbers(value, name + "/")
        elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            yield name, float(value)


def _plain(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A config as flat JSON-able values (classes and callables by name)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_plain(value, name + "/"))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = value
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (bool, int, float, str)) for v in value):
            out[name] = list(value)
        else:
            out[name] = getattr(value, "__name__", None) or type(value).__name__
    return out


def _node() -> str:
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # outside a Ray worker
        return socket.gethostname()


def _stream(settings: dict[str, Any], stream: str, worker: str, **fields: Any) -> MetricsLogger:
    key = (settings["run_id"], stream)
    with _lock:
        logger = _streams.get(key)
        if logger is None or logger.is_closed():
            logger = MetricsLogger(
                settings["experiment"],
                output_dir=settings["output_dir"],
                run_id=settings["run_id"],
                stream=stream,
                worker=worker,
                objective="episode_return",
                config=settings["config"],
                **fields,
            )
            _streams[key] = logger
        return logger


def close_local_streams(run_id: str | None = None, status: str = "finished") -> int:
    """Close this process's streams (of ``run_id``, or all); returns how many were open."""
    with _lock:
        keys = [k for k in _streams if run_id is None or k[0] == run_id]
        loggers = [_streams.pop(k) for k in keys]
    for logger in loggers:
        logger.close(status=status)
    return len(loggers)


def close_streams(algorithm: Any, status: str = "finished") -> None:
    """End an RLlib algorithm's streams cleanly: every EnvRunner's, then the driver's.

    Call it before ``algorithm.stop()``: actors that are killed never flush their last
    episodes, and their streams would be marked stalled, then lost.
    """
    run_id = getattr(algorithm, "_traindash_run_id", None)
    group = getattr(algorithm, "env_runner_group", None)
    if group is not None:
        group.foreach_env_runner(lambda _runner: close_local_streams(run_id, status), local_env_runner=True)
    close_local_streams(run_id, status)


def traindash_callbacks(
    run_id: str | None = None,
    *,
    experiment: str = "rllib",
    output_dir: str = "training_logs",
    config: ProducerConfig | None = None,
    description: str = "",
    tags: list[str] | None = None,
) -> type[RLlibCallback]:
    """An RLlib callback class that publishes one run (``run_id``, new by default) per algorithm.

    ``config`` (endpoints, intervals) travels to the actors by pickle: leave it None to have
    each process read its ``TRAINDASH_*`` variables (and keep CURVE secrets out of pickles).
    """
    settings = {
        "run_id": run_id or new_run_id(experiment),
        "experiment": experiment,
        "output_dir": output_dir,
        "config": config,
        "description": description,
        "tags": list(tags or []),
    }

    class TraindashCallbacks(RLlibCallback):
        """Episodes from each EnvRunner and training results from the driver, into traindash."""

        run_id = settings["run_id"]

        def __init__(self) -> None:
            super().__init__()
            self._env_steps = 0  # this process's, as its stream's episode count is
            self._episodes = 0

        def on_algorithm_init(self, *, algorithm: Any, metrics_logger: Any = None, **kwargs: Any) -> None:
            algorithm._traindash_run_id = settings["run_id"]
            try:
                hyper = _plain(algorithm.config.to_dict())
            except Exception:  # an algorithm config that does not serialise
                hyper = {}
            _stream(
                settings,
                DRIVER_STREAM,
                DRIVER_STREAM,
                hyperparameters=hyper,
                tags=settings["tags"],
                description=settings["description"],
                name=f"{type(algorithm).__name__} {settings['run_id']}",
            )

        def on_episode_end(
            self,
            *,
            episode: Any,
            prev_episode_chunks: list[Any] | None = None,
            env_runner: Any = None,
            env_index: int = 0,
            **kwargs: Any,
        ) -> None:
            index = int(getattr(env_runner, "worker_index", 0) or 0)
            worker = f"env_runner_{index}"
            logger = _stream(settings, f"{worker}-{os.getpid()}", worker)
            chunks = [*(prev_episode_chunks or []), episode]
            length = sum(len(c) for c in chunks)
            self._env_steps += length
            self._episodes += 1
            logger.log_episode(
                self._episodes - 1,
                episode_return=float(sum(c.get_return() for c in chunks)),
                episode_length=length,
                env_step=self._env_steps,
                terminated=bool(getattr(episode, "is_terminated", False)),
                truncated=bool(getattr(episode, "is_truncated", False)),
                env_index=int(env_index),
                worker=worker,
                worker_index=index,
                node=_node(),
            )

        def on_train_result(
            self, *, algorithm: Any, result: dict, metrics_logger: Any = None, **kwargs: Any
        ) -> None:
            logger = _stream(settings, DRIVER_STREAM, DRIVER_STREAM)
            step = int(result.get("training_iteration", 0) or 0)
            logger.log(dict(flat_numbers(result)), step=step)

    return TraindashCallbacks


class TraindashLoggerCallback(LoggerCallback):
    """A Ray Tune logger: one traindash run per trial.

    The trial's config becomes the run's hyperparameters; each result's numeric values
    become scalars at its ``training_iteration``. A failed trial's run ends ``failed``.
    """

    def __init__(
        self,
        experiment: str = "tune",
        *,
        output_dir: str = "training_logs",
        config: ProducerConfig | None = None,
        objective: str = "profit",
    ) -> None:
        self.experiment = experiment
        self.output_dir = output_dir
        self.config = config
        self.objective = objective
        self.loggers: dict[str, MetricsLogger] = {}

    def _logger(self, trial: Any) -> MetricsLogger:
        logger = self.loggers.get(trial.trial_id)
        if logger is None:
            logger = MetricsLogger(
                self.experiment,
                output_dir=self.output_dir,
                run_id=new_run_id(f"{self.experiment}-{trial.trial_id}"),
                name=str(trial),
                hyperparameters=_plain(trial.config or {}),
                tags=["tune", f"trial:{trial.trial_id}"],
                config=self.config,
                objective=self.objective,
            )
            self.loggers[trial.trial_id] = logger
        return logger

    def log_trial_start(self, trial: Any) -> None:
        self._logger(trial)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        step = int(result.get("training_iteration", iteration) or 0)
        self._logger(trial).log(dict(flat_numbers(result)), step=step)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        logger = self.loggers.pop(trial.trial_id, None)
        if logger is not None:
            logger.close(status="failed" if failed else "finished")

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        for trial_id in list(self.loggers):
            self.loggers.pop(trial_id).close()

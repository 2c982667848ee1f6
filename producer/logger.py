"""MetricsLogger: the guide's logging API on top of the traindash pipeline."""

from __future__ import annotations

import atexit
import logging
import os
import socket
import struct
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import Any, cast

import numpy as np

from traindash import config as tdconfig
from traindash.producer.link import CONNECTED, NOT_LISTENING
from traindash.producer.packing import EPISODE, EPISODE_RECORD, MODEL, OTHER, SCALARS
from traindash.producer.ring import RingWriter
from traindash.producer.sender import Sender
from traindash.producer.senders import SenderKind, open_process_sender, open_thread_sender
from traindash.producer.shipper_client import ShipperClient, ShipperGone, StatsProxy
from traindash.producer.snapshot import Snapshots
from traindash.producer.spool import load_last_seq
from traindash.producer.stats import RunStats
from traindash.reports import TRAINER_ROLE
from traindash.wire import NAME_RE, STREAM_SEP, RecordKind, stream_key

_pack_episode = EPISODE_RECORD.pack
log = logging.getLogger("traindash.producer")

MAX_QUEUED = 4_096
SUMMARY_KEYS = (
    "total_episodes",
    "best_profit",
    "best_episode",
    "avg_profit",
    "best_sharpe",
    "max_drawdown",
    "training_time",
)


class _FromConfig(Enum):
    """The default of ``system_metrics_interval``: whatever the config says."""

    FROM_CONFIG = "from config"


FROM_CONFIG = _FromConfig.FROM_CONFIG

_open_loggers: weakref.WeakSet[MetricsLogger] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for logger in list(_open_loggers):
        logger.close()


def new_run_id(experiment_name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in experiment_name)[:40]
    return f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"


class MetricsLogger:
    """Logs episode and model metrics of one training run to the traindash collector.

    A log call appends to an in-memory queue and returns in microseconds; a background
    thread packs batches and publishes them, keeps each record until the collector has
    committed it, and re-sends what went missing. ``close()`` (or leaving a ``with``
    block, or interpreter exit) waits, bounded, for the collector to acknowledge
    everything; what it has not acknowledged by then stays in the run's spool file in
    ``output_dir`` and is re-sent by the next logger with the same ``run_id`` or by
    ``traindash replay``.

    Args:
        experiment_name: the experiment this run belongs to.
        output_dir: where ``save_metrics`` writes and where the spool lives.
        buffer_size: the sender wakes early once this many records wait (the process
            sender's shipper polls about as often as this many records arrive).
        auto_save_interval: every this many episodes (and at most every 30 s),
            ``save_metrics('json')`` refreshes a snapshot of the run in ``output_dir`` on a
            background thread; 0 turns it off. Durability does not depend on it: the
            collector stores each row as it is acknowledged.
        enable_async: with False, each log call also packs its record in the caller
            (thread sender only).
        run_id: resume an earlier run (its spool is re-sent); a new unique id by default.
        hyperparameters, tags, description, name: stored in the ``runs`` table.
        history_size: how many recent records the local statistics window keeps.
        role: ``"trainer"``; services that publish records (the alerts process) set their own.
        config: endpoints and intervals; by default from ``TRAINDASH_*`` variables.
        sender: ``"thread"`` (a background thread packs and publishes) or ``"process"``
            (log calls copy records into shared memory and a shipper process does the
            rest, so a trainer whose work holds the GIL never waits for it); by default
            ``config.sender``.
        objective: the episode column that ranks this run and its episodes (KPI cards,
            best episode, leaderboard, new-best alerts): ``"profit"`` (the guide's
            default), ``"episode_return"`` for runs recorded from environments, or any
            custom column. Higher is better, except for ``drawdown`` and ``loss``.
        system_metrics_interval: seconds between samples of this process's CPU and memory,
            its host's and its NVIDIA GPUs' (the ``system`` table; docs/system.md), taken off
            the training thread by the sender. By default ``config.system_interval`` (10 s;
            ``TRAINDASH_SYSTEM_INTERVAL``) for trainers and off for other roles; 0, None or
            False switch it off.
        stream: this process's name among several writing the same ``run_id`` (an RLlib
            EnvRunner, a rank): each stream has its own seqs, acks and spool, and its rows
            carry it in their ``stream`` column. None: the run's only writer.
        worker: a label for the ``streams`` table (by default the stream name).
    """

    def __new__(
        cls, *args: Any, sender: str | None = None, config: Any = None, **kwargs: Any
    ) -> MetricsLogger:
        # As pathlib.Path picks PosixPath or WindowsPath: each sender has a class of its own
        # (SENDERS), so each one's log_episode is a plain method, with nothing to dispatch
        # on the hot path.
        if cls in _SENDER_CLASSES:  # not a subclass of someone else's, which keeps its class
            name = sender or (config or tdconfig.ProducerConfig.resolve()).sender
            if name in SENDERS:
                cls = SENDERS[name].logger_class
        return super().__new__(cls)

    def __init__(
        self,
        experiment_name: str,
        output_dir: str = "training_logs",
        buffer_size: int = 100,
        auto_save_interval: int = 50,
        enable_async: bool = True,
        *,
        run_id: str | None = None,
        name: str | None = None,
        hyperparameters: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        description: str = "",
        history_size: int = 10_000,
        role: str = TRAINER_ROLE,
        config: tdconfig.ProducerConfig | None = None,
        sender: str | None = None,
        objective: str = "profit",
        system_metrics_interval: float | None | _FromConfig = FROM_CONFIG,
        stream: str | None = None,
        worker: str | None = None,
    ) -> None:
        if not isinstance(experiment_name, str) or not experiment_name:
            raise ValueError("experiment_name must be a non-empty string")
        if buffer_size < 1:
            raise ValueError("buffer_size must be at least 1")
        if not isinstance(objective, str) or not NAME_RE.match(objective):
            raise ValueError(
                f"objective must name an episode column, like 'episode_return', not {objective!r}"
            )
        self.objective = objective
        self.experiment_name = experiment_name
        self.output_dir = Path(output_dir).absolute()
        self.buffer_size = buffer_size
        # Queue length at which a log call wakes the thread sender: buffer_size, or 1 while
        # the sender dozes (nothing in flight), so a quiet stream costs no idle wake-ups.
        self._wake_at = buffer_size
        self.auto_save_interval = auto_save_interval
        self.enable_async = enable_async
        self.config = _with_system_interval(
            config or tdconfig.ProducerConfig.resolve(), system_metrics_interval, role
        )
        self.run_id = run_id or new_run_id(experiment_name)
        if STREAM_SEP in self.run_id or (stream is not None and not stream):
            raise ValueError(f"run_id may not contain {STREAM_SEP!r} and a stream name may not be empty")
        self.stream = stream
        self.stream_key = stream_key(self.run_id, stream)  # what seqs, acks and the spool follow
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self._model_step = 0
        self._scalar_step = 0
        self._last_episode: Any = None
        self._closed = False
        last_seq = load_last_seq(self.output_dir, self.stream_key)
        self.sender = sender or self.config.sender
        try:
            kind = SENDERS[self.sender]
        except KeyError:
            raise ValueError(f"sender must be {_sender_names()}, not {self.sender!r}") from None
        self._queue: deque[Any] | RingWriter
        self._sender: Sender | ShipperClient
        self._stats: RunStats | StatsProxy
        self._sender, self._queue, self._stats = kind.open(self, last_seq, history_size)
        self._run_fields: dict[str, Any] = {
            "experiment": experiment_name,
            "name": name or self.run_id,
            "host": self.host,
            "pid": self.pid,
            "hyperparameters": hyperparameters or {},
            "tags": list(tags or []),
            "description": description,
            "role": role,
            "objective": objective,
        }
        if stream is not None:
            self._run_fields.update(stream=stream, worker=worker or stream)
        self._queue.append((OTHER, time.time(), RecordKind.RUN, dict(self._run_fields)))
        self._snapshots = Snapshots(
            experiment_name,
            self.run_id,
            self.output_dir,
            self.config,
            self._stats,
            self.flush,
            0 if kind.auto_saves else auto_save_interval,
        )
        if isinstance(self._sender, Sender):
            self._sender.on_packed = self._snapshots.maybe_auto_save
        self._sender.start()
        _open_loggers.add(self)

    # -- logging (the hot path: append and return) -----------------------------------
    def log_episode(
        self,
        episode: int,
        profit: float | None = None,
        sharpe: float = 0.0,
        win_rate: float = 0.0,
        drawdown: float = 0.0,
        num_trades: int = 0,
        epsilon: float = 0.0,
        learning_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Queue one episode's metrics; extra keyword metrics become columns of their own.

        RL fields are keyword arguments with columns of their own: ``episode_return``,
        ``episode_length``, ``env_step`` (the global environment step), ``terminated``,
        ``truncated``, ``env_index`` and ``worker``; ``profit`` may then be left out
        (it is NULL, as is any of these fields that is not given).
        """
        q = self._queue
        record: bytes | tuple | None = None
        if not kwargs:
            # The common case leaves the training thread as 72 packed bytes: the sender
            # then has no per-value work left, only whole-buffer numpy calls.
            try:
                record = _pack_episode(
                    time.time(),
                    episode,
                    profit,
                    sharpe,
                    win_rate,
                    drawdown,
                    num_trades,
                    epsilon,
                    learning_rate,
                )
            except struct.error:  # values that are not plain numbers
                pass
        if record is None:
            record = (
                EPISODE,
                time.time(),
                episode,
                profit,
                sharpe,
                win_rate,
                drawdown,
                num_trades,
                epsilon,
                learning_rate,
                kwargs or None,
            )
        q.append(record)
        self._last_episode = episode
        n = len(q)
        if n >= self._wake_at:
            self._backlog(n)
        elif not self.enable_async:
            self._sender.drain()

    def _backlog(self, n: int) -> None:
        if n == self._wake_at:
            cast(Sender, self._sender).wake.set()  # only the thread sender gets here
            if self.enable_async:
                return
        if n >= MAX_QUEUED or not self.enable_async:
            # The sender is behind: pack here (CPU only, no network or disk) so the queue,
            # and the trainer's memory, stay bounded.
            self._sender.drain()

    def log_model_metrics(
        self,
        loss: float,
        q_values: Any = None,
        gradients: dict[str, float] | None = None,
        weights: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Queue one model update: loss, Q-values (summarised and kept), gradient stats."""
        if kwargs:
            step = kwargs.pop("step", None)
            episode = kwargs.pop("episode", self._last_episode)
        else:
            step, episode = None, self._last_episode
        self._model_step = self._model_step + 1 if step is None else int(step)
        q: Any = None
        if type(q_values) is list or type(q_values) is tuple:
            q = tuple(q_values)  # a copy; the sender turns it into numbers
        elif q_values is not None:
            try:
                q = np.array(q_values, dtype=np.float64).ravel()
            except (TypeError, ValueError):
                q = None
        self._queue.append(
            (
                MODEL,
                time.time(),
                self._model_step,
                episode,
                loss,
                q,
                _mapping(gradients, "gradients", kwargs),
                _mapping(weights, "weights", kwargs),
                kwargs,
            )
        )
        n = len(self._queue)
        if n >= self._wake_at:
            self._backlog(n)
        elif not self.enable_async:
            self._sender.drain()

    def log(self, metrics: Mapping[str, Any], step: int | None = None, *, ts: float | None = None) -> None:
        """Queue named scalars at ``step``: ``log({"losses/value_loss": 0.3}, step=global_step)``.

        Each number becomes a row of the ``scalars`` table (run_id, seq, ts, step, name,
        value); names keep their slashes. Values that are not numbers are left out.
        ``step`` is by default one more than the previous call's (0 at first), as in
        wandb and trackio; ``ts`` (Unix seconds) is by default now.
        """
        if step is None:
            step = self._scalar_step
        elif type(step) is not int:
            step = int(step)
        self._scalar_step = step + 1
        # A copy: training code often refills the same dict before the sender packs it.
        values = metrics.copy() if type(metrics) is dict else dict(metrics)
        q = self._queue
        q.append((SCALARS, time.time() if ts is None else ts, step, values))
        n = len(q)
        if n >= self._wake_at:
            self._backlog(n)
        elif not self.enable_async:
            self._sender.drain()

    def _sender_dozing(self, dozing: bool) -> None:
        self._wake_at = 1 if dozing else self.buffer_size

    def update_hyperparameters(self, values: Mapping[str, Any]) -> None:
        """Merge ``values`` into the run's stored hyperparameters (TensorBoard's ``add_hparams``)."""
        merged = {**self._run_fields["hyperparameters"], **values}
        self._run_fields["hyperparameters"] = merged
        self._queue.append((OTHER, time.time(), RecordKind.RUN, dict(self._run_fields)))

    def log_event(self, kind: RecordKind, /, *, ts: float | None = None, **fields: Any) -> None:
        """Queue a run-level record (alerts, summaries, the run's end); ``ts`` by default now."""
        self._queue.append((OTHER, time.time() if ts is None else ts, kind, fields))

    # -- local statistics --------------------------------------------------------------
    def _sync(self) -> None:
        self._sender.drain()  # the process sender syncs on each statistics request

    @property
    def episode_metrics(self) -> list[dict[str, Any]]:
        """The most recent episodes (up to ``history_size``), oldest first."""
        self._sync()
        return self._stats.recent_episodes()

    @episode_metrics.setter
    def episode_metrics(self, value: list[dict[str, Any]]) -> None:
        # The guide trims this list to save memory; the window is bounded already.
        if not value:
            self._stats.clear_window()

    def get_latest_episode(self) -> dict[str, Any]:
        self._sync()
        return self._stats.latest_episode()

    def get_best_episode(self, metric: str | None = None) -> dict[str, Any] | None:
        """The best episode so far by ``metric`` (by default the run's objective)."""
        self._sync()
        return self._stats.best_record(metric or self.objective)

    def get_smoothed_metric(self, name: str, window: int = 10) -> float:
        self._sync()
        return self._stats.smoothed(name, window)

    def get_statistics(self) -> dict[str, Any]:
        self._sync()
        stats = self._stats.statistics()
        stats.update(
            experiment_name=self.experiment_name, run_id=self.run_id, pending_records=self._sender.pending
        )
        if self.objective != "profit":
            best = self._stats.best_record(self.objective) or {}
            stats.update(objective=self.objective, best_objective=best.get(self.objective))
        return stats

    # -- saving --------------------------------------------------------------------------
    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the collector has acknowledged everything logged so far."""
        return self._sender.flush(timeout)

    def save_metrics(self, format: str = "json") -> Path:
        """Write this run's metrics to ``output_dir`` as JSON or CSV; returns the path.

        The rows come from the collector (every stored row); when no collector answers,
        from the local window of recent records.
        """
        return self._snapshots.save(format)

    # -- lifecycle ------------------------------------------------------------------------
    def close(
        self,
        status: str = "finished",
        final_metrics: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Send the run's end, wait (bounded) for every acknowledgement, then stop."""
        if self._closed:
            return
        self._closed = True
        _open_loggers.discard(self)
        self._sync()
        if not final_metrics:
            try:
                final_metrics = summary_metrics(self._stats.statistics())
            except ShipperGone:  # stop() below says what that means for the records
                final_metrics = {}
        self.log_event(RecordKind.END, status=status, final_metrics=final_metrics)
        timeout = self.config.close_timeout if timeout is None else timeout
        self._sender.stop(timeout)
        self._sender.join()
        self._snapshots.join(timeout=10)
        left = self._sender.pending
        if left:
            log.warning(
                "traindash: %d records of run %s are not yet acknowledged (%s); kept in %s, "
                "they are re-sent by a logger with the same run_id or by `traindash replay`, "
                "and the collector stores each record once",
                left,
                self.run_id,
                _collector_state(self._sender.collector_state, self.config.endpoints.ingest, timeout),
                self._sender.spool_path,
            )

    def is_closed(self) -> bool:
        return self._closed

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        self.close(status="crashed" if exc_type is not None else "finished")

    def __repr__(self) -> str:
        return f"MetricsLogger(experiment_name={self.experiment_name!r}, run_id={self.run_id!r})"


def _with_system_interval(
    config: tdconfig.ProducerConfig, interval: float | None | _FromConfig, role: str
) -> tdconfig.ProducerConfig:
    if interval is FROM_CONFIG:
        if role == "trainer":
            return config
        interval = 0.0
    if interval is True:
        interval = config.system_interval or tdconfig.ProducerConfig.system_interval
    try:
        seconds = tdconfig.interval(interval or 0.0)
    except (TypeError, ValueError):
        raise ValueError(
            f"system_metrics_interval must be seconds >= 0 (0, None or False: off), not {interval!r}"
        ) from None
    return config if seconds == config.system_interval else replace(config, system_interval=seconds)


def _mapping(value: Any, name: str, kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """A dict copy of ``value``; anything else is kept under ``kwargs[name]`` instead."""
    if not value:
        return None
    if type(value) is dict or isinstance(value, Mapping):
        return dict(value)
    kwargs[name] = value
    return None


def summary_metrics(stats: dict[str, Any]) -> dict[str, Any]:
    """A run's final metrics (stored with its end) from ``get_statistics()``."""
    return {k: stats[k] for k in SUMMARY_KEYS if k in stats}


class ProcessSenderLogger(MetricsLogger):
    """A MetricsLogger on the process sender (``MetricsLogger(..., sender="process")``)."""

    _queue: RingWriter

    def log_episode(
        self,
        episode: int,
        profit: float | None = None,
        sharpe: float = 0.0,
        win_rate: float = 0.0,
        drawdown: float = 0.0,
        num_trades: int = 0,
        epsilon: float = 0.0,
        learning_rate: float = 0.0,
        **kwargs: Any,
    ) -> None:
        """Queue one episode's metrics; a plain episode goes straight into the ring."""
        if kwargs or not self._queue.put_episode(
            time.time(), episode, profit, sharpe, win_rate, drawdown, num_trades, epsilon, learning_rate
        ):
            super().log_episode(
                episode,
                profit,
                sharpe,
                win_rate,
                drawdown,
                num_trades,
                epsilon,
                learning_rate,
                **kwargs,
            )
            return
        self._last_episode = episode


# One entry per name in traindash.config.SENDERS.
SENDERS: dict[str, SenderKind] = {
    "thread": SenderKind(open_thread_sender, MetricsLogger, auto_saves=False),
    # The process sender auto-saves in the shipper, where the statistics live.
    "process": SenderKind(open_process_sender, ProcessSenderLogger, auto_saves=True),
}


_SENDER_CLASSES = frozenset(kind.logger_class for kind in SENDERS.values())


def _sender_names() -> str:
    return " or ".join(map(repr, SENDERS))


def _collector_state(state: str, ingest: str, timeout: float) -> str:
    """The collector's state at ``close()``, in words, for the warning."""
    if state == CONNECTED:
        return f"the collector at {ingest} is connected but did not acknowledge them within {timeout:g} s"
    if state == NOT_LISTENING:
        return f"no collector is listening at {ingest}"
    return f"the collector at {ingest} did not acknowledge them within {timeout:g} s"

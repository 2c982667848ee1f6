"""A TensorBoard-compatible writer that logs into traindash, and ``patch()`` for existing code.

Change one import::

    from traindash.producer.integrations.tensorboard import SummaryWriter

    writer = SummaryWriter(experiment_name="ppo_cartpole")
    writer.add_scalar("charts/episodic_return", 21.0, global_step)
    writer.close()

or leave the code alone and call :func:`patch` first: every ``torch.utils.tensorboard`` and
``tensorboardX`` writer (also one a library such as Stable-Baselines3 creates from
``tensorboard_log=``) then also sends what it writes here, and still writes its event files,
as wandb's ``sync_tensorboard`` does.

Where things land: ``add_scalar``/``add_scalars`` in the ``scalars`` table (``add_scalars``
names each value ``main_tag/key``); ``add_histogram`` and ``add_text`` in ``summaries``
(a histogram's count, min, max, mean and std, and its values, up to
:data:`MAX_HISTOGRAM_VALUES` of them evenly picked); ``add_hparams`` in the run's
hyperparameters, its metrics as scalars. As in TensorBoard, a missing ``global_step`` is
step 0 and a missing ``walltime`` is now.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from traindash.producer.logger import MetricsLogger
from traindash.wire import RecordKind

__all__ = ["MAX_HISTOGRAM_VALUES", "SummaryWriter", "patch", "unpatch"]

MAX_HISTOGRAM_VALUES = 4096
PATCHED_MODULES = ("torch.utils.tensorboard", "tensorboardX")
# Writer methods that patch() mirrors into the SummaryWriter method of the same name here.
MIRRORED = ("add_scalar", "add_scalars", "add_histogram", "add_text", "add_hparams", "flush", "close")


def _step(global_step: Any) -> int:
    return 0 if global_step is None else int(global_step)


def _as_array(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64).ravel()


class SummaryWriter:
    """TensorBoard's ``SummaryWriter`` interface, writing into a traindash run.

    Args:
        log_dir: as TensorBoard's; here it only names the experiment when
            ``experiment_name`` is not given (its last part). No files are written.
        comment: appended to the default experiment name, as TensorBoard does to log_dir.
        logger: log into this run; by default a new ``MetricsLogger`` closed by :meth:`close`.
        experiment_name: the experiment of the logger made here.
        logger_kwargs: more arguments for the logger made here (``config``, ``output_dir``,
            ``objective``, ...).
    """

    def __init__(
        self,
        log_dir: str | os.PathLike | None = None,
        comment: str = "",
        *args: Any,
        logger: MetricsLogger | None = None,
        experiment_name: str | None = None,
        **logger_kwargs: Any,
    ) -> None:
        self.log_dir = None if log_dir is None else str(log_dir)
        self._owns_logger = logger is None
        if logger is None:
            name = experiment_name or (Path(self.log_dir).name if self.log_dir else "tensorboard") + comment
            logger = MetricsLogger(name or "tensorboard", **logger_kwargs)
        self.logger = logger
        self._closed = False

    # -- TensorBoard's methods ---------------------------------------------------------------
    def add_scalar(
        self,
        tag: str,
        scalar_value: Any,
        global_step: int | None = None,
        walltime: float | None = None,
        new_style: bool = False,
        double_precision: bool = False,
        **_: Any,
    ) -> None:
        """One scalar at ``global_step`` (step 0 if None), at ``walltime`` (now if None)."""
        self.logger.log({tag: scalar_value}, step=_step(global_step), ts=walltime)

    def add_scalars(
        self,
        main_tag: str,
        tag_scalar_dict: dict[str, Any],
        global_step: int | None = None,
        walltime: float | None = None,
        **_: Any,
    ) -> None:
        """Several scalars at one step, each named ``main_tag/key``."""
        self.logger.log(
            {f"{main_tag}/{k}": v for k, v in tag_scalar_dict.items()}, step=_step(global_step), ts=walltime
        )

    def add_histogram(
        self,
        tag: str,
        values: Any,
        global_step: int | None = None,
        bins: Any = "tensorflow",
        walltime: float | None = None,
        max_bins: int | None = None,
        **_: Any,
    ) -> None:
        """A row of ``summaries``: count, min, max, mean, std and the values themselves."""
        arr = _as_array(values)
        finite = arr[np.isfinite(arr)]
        if arr.size > MAX_HISTOGRAM_VALUES:
            kept = arr[np.linspace(0, arr.size - 1, MAX_HISTOGRAM_VALUES).astype(np.int64)]
        else:
            kept = arr
        stats = (
            (float(finite.min()), float(finite.max()), float(finite.mean()), float(finite.std()))
            if finite.size
            else (math.nan,) * 4
        )
        self._summary(
            tag,
            "histogram",
            global_step,
            walltime,
            values=kept.tolist(),
            count=int(arr.size),
            min=stats[0],
            max=stats[1],
            mean=stats[2],
            std=stats[3],
        )

    def add_text(
        self,
        tag: str,
        text_string: str,
        global_step: int | None = None,
        walltime: float | None = None,
        **_: Any,
    ) -> None:
        """A row of ``summaries`` with the text."""
        self._summary(tag, "text", global_step, walltime, text=str(text_string))

    def add_hparams(
        self,
        hparam_dict: dict[str, Any],
        metric_dict: dict[str, Any],
        hparam_domain_discrete: dict[str, list] | None = None,
        run_name: str | None = None,
        global_step: int | None = None,
        **_: Any,
    ) -> None:
        """Hyperparameters into the run's ``hyperparameters``; the metrics as scalars."""
        self.logger.update_hyperparameters(dict(hparam_dict))
        if metric_dict:
            self.logger.log(dict(metric_dict), step=_step(global_step))

    def flush(self) -> None:
        """Hand what was written so far to the sender; it never waits for the collector
        (libraries call ``flush`` after every dump). ``close`` waits, bounded."""
        self.logger._sync()

    def close(self) -> None:
        """Flush; close the logger if this writer opened it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_logger:
            self.logger.close()
        else:
            self.logger.flush()

    def __enter__(self) -> SummaryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _summary(self, tag: str, kind: str, global_step: Any, walltime: float | None, **fields: Any) -> None:
        self.logger.log_event(
            RecordKind.SUMMARY, ts=walltime, step=_step(global_step), name=str(tag), kind=kind, **fields
        )


# -- patch(): mirror TensorBoard writers ------------------------------------------------------
_lock = threading.Lock()
_patched: dict[type, dict[str, Any]] = {}
_settings: dict[str, Any] = {}


def _mirror(writer: Any) -> SummaryWriter:
    """The traindash writer that mirrors a patched TensorBoard writer (made on first use)."""
    mirror = writer.__dict__.get("_traindash")
    if mirror is None:
        log_dir = getattr(writer, "log_dir", None) or getattr(writer, "logdir", None)
        logger = _settings.get("logger")
        kwargs = dict(_settings.get("logger_kwargs") or {})
        mirror = SummaryWriter(log_dir, logger=logger, **kwargs)
        writer.__dict__["_traindash"] = mirror
    return mirror


_depth = threading.local()


def _wrap(cls: type, name: str, original: Any) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        outer = getattr(_depth, "n", 0)
        _depth.n = outer + 1
        try:
            result = original(self, *args, **kwargs)
        finally:
            _depth.n = outer
        if outer:
            # Called by another writer method (torch's add_hparams writes through a writer
            # of its own): the outer call is mirrored once, as a whole.
            return result
        try:
            getattr(_mirror(self), name)(*args, **kwargs)
        except Exception as exc:  # the user's TensorBoard logging must never break
            _warn_once(f"traindash could not mirror {cls.__name__}.{name}: {exc}")
        return result

    method.__name__ = name
    method.__doc__ = original.__doc__
    method.__wrapped__ = original  # type: ignore[attr-defined]
    return method


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    import logging

    if message not in _warned:
        _warned.add(message)
        logging.getLogger("traindash.producer").warning(message)


def patch(logger: MetricsLogger | None = None, **logger_kwargs: Any) -> list[str]:
    """Mirror every ``torch.utils.tensorboard`` and ``tensorboardX`` writer into traindash.

    The writers' classes are patched in place, so writers created before or after, and
    references a library took at import time, are covered; they still write their own
    event files. With ``logger``, all of them log into that run; otherwise each writer
    opens a run of its own (experiment: its log_dir's last part, or ``experiment_name``
    from ``logger_kwargs``), closed with the writer. Returns the modules patched; those not
    installed are skipped. :func:`unpatch` undoes it.
    """
    done = []
    with _lock:
        _settings.update(logger=logger, logger_kwargs=logger_kwargs)
        for module_name in PATCHED_MODULES:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue
            cls = getattr(module, "SummaryWriter", None)
            if cls is None:
                continue
            done.append(module_name)
            if cls in _patched:
                continue
            originals = {name: cls.__dict__[name] for name in MIRRORED if name in cls.__dict__}
            for name, original in originals.items():
                setattr(cls, name, _wrap(cls, name, original))
            _patched[cls] = originals
    return done


def unpatch() -> None:
    """Undo :func:`patch`; writers made meanwhile keep their traindash runs until closed."""
    with _lock:
        for cls, originals in _patched.items():
            for name, original in originals.items():
                setattr(cls, name, original)
        _patched.clear()
        _settings.clear()

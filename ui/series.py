"""Pure data shaping for the plots: the columns each data source holds, derived series
(rolling means) computed the same way for history and for streamed rows.

The history SQL (``ui.history``) computes the same rolling windows in DuckDB; the
:class:`Roller` continues them for streamed rows from the tail of what is already shown.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PROFIT_WINDOW = 10
LOSS_WINDOW = 20
WIN_RATE_WINDOW = 20
SHARPE_WINDOW = 10

# Columns of the per-run episode and model data sources, in order.
EPISODE_COLUMNS = (
    "seq",
    "ts",
    "episode",
    "profit",
    "profit_smooth",
    "sharpe",
    "sharpe_smooth",
    "win_rate",
    "win_rate_pct",
    "drawdown",
    "epsilon",
    "learning_rate",
    "env_step",
    "wall",
    "objective",
    "objective_smooth",
)
# The x axes an episode plot can follow: switch label -> column of the episode source.
EPISODE_AXES = {"episode": "episode", "env step": "env_step", "wall time": "wall"}
MODEL_COLUMNS = ("seq", "ts", "step", "episode", "loss", "loss_smooth", "q_mean", "q_std", "q_lo", "q_hi")
# The data sources add each row's stream id (``ui.streams``: 0 for a run's only writer).
EPISODE_SOURCE = (*EPISODE_COLUMNS, "sid")
MODEL_SOURCE = (*MODEL_COLUMNS, "sid")

# derived column -> (raw column, window, scale)
EPISODE_ROLLING = {
    "profit_smooth": ("profit", PROFIT_WINDOW, 1.0),
    "sharpe_smooth": ("sharpe", SHARPE_WINDOW, 1.0),
    "win_rate_pct": ("win_rate", WIN_RATE_WINDOW, 100.0),
    "objective_smooth": ("objective", PROFIT_WINDOW, 1.0),
}
MODEL_ROLLING = {"loss_smooth": ("loss", LOSS_WINDOW, 1.0)}


def rolling_mean(values: np.ndarray, window: int, tail: Sequence[float] = ()) -> np.ndarray:
    """Trailing mean over ``window`` values, continuing from ``tail`` (the values before).

    Like SQL ``avg(x) OVER (ROWS window-1 PRECEDING)``: a short start averages what there
    is; a NaN inside the window makes the mean NaN, so bad values stay visible.
    """
    values = np.asarray(values, dtype=np.float64)
    tail_arr = np.asarray(list(tail)[-(window - 1) :] if window > 1 else [], dtype=np.float64)
    full = np.concatenate([tail_arr, values])
    if len(values) == 0:
        return np.empty(0)
    bad = np.isnan(full)
    # NaNs are summed as 0 and counted apart, so one NaN only spoils the windows that hold it.
    csum = np.concatenate([[0.0], np.cumsum(np.where(bad, 0.0, full))])
    idx = np.arange(len(tail_arr), len(full))
    start = np.maximum(idx + 1 - window, 0)
    out = (csum[idx + 1] - csum[start]) / (idx + 1 - start)
    if bad.any():
        nan_count = np.concatenate([[0], np.cumsum(bad)])
        out[(nan_count[idx + 1] - nan_count[start]) > 0] = np.nan
    return out


@dataclass
class Roller:
    """Keeps the last values of each raw column so streamed rows get the right rolling means."""

    specs: Mapping[str, tuple[str, int, float]]
    tails: dict[str, deque] = field(default_factory=dict)

    def seed(self, raw: Mapping[str, Sequence[float]]) -> None:
        """Start from the raw values just before the first streamed row (the history's end)."""
        for column, window, _ in self.specs.values():
            self.tails[column] = deque(list(raw.get(column, ()))[-window:], maxlen=window)

    def apply(self, cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for derived, (column, window, scale) in self.specs.items():
            values = np.asarray(cols[column], dtype=np.float64)
            tail = self.tails.setdefault(column, deque(maxlen=window))
            cols[derived] = rolling_mean(values, window, tail) * scale
            tail.extend(values.tolist())
        return cols


def _float_col(cols: Mapping[str, Any], name: str, n: int) -> np.ndarray:
    value = cols.get(name)
    if value is None:
        return np.full(n, np.nan)
    if isinstance(value, np.ndarray):
        return value.astype(np.float64, copy=False)
    return np.array([np.nan if v is None else v for v in value], dtype=np.float64)


def episode_rows(
    cols: Mapping[str, Any], roller: Roller, objective: str = "profit", sid: int = 0
) -> dict[str, np.ndarray]:
    """Streamed episode columns (from the rows socket) shaped for the episode data source;
    ``objective`` names the column the objective plot and KPI cards follow, ``sid`` the
    rows' stream id."""
    n = len(cols["seq"])
    out = {
        name: _float_col(cols, name, n)
        for name in ("ts", "profit", "sharpe", "win_rate", "drawdown", "epsilon", "learning_rate", "env_step")
    }
    out["seq"] = np.asarray(cols["seq"], dtype=np.int64)
    out["episode"] = _float_col(cols, "episode", n)
    out["objective"] = _float_col(cols, objective, n)
    out["wall"] = out["ts"] * 1000.0  # ms, as Bokeh's datetime axis wants
    roller.apply(out)
    out["sid"] = np.full(n, sid, dtype=np.int64)
    return {name: out[name] for name in EPISODE_SOURCE}


def model_rows(cols: Mapping[str, Any], roller: Roller, sid: int = 0) -> dict[str, np.ndarray]:
    """Streamed model-metric columns shaped for the model data source."""
    n = len(cols["seq"])
    out = {name: _float_col(cols, name, n) for name in ("ts", "loss", "q_mean", "q_std")}
    out["seq"] = np.asarray(cols["seq"], dtype=np.int64)
    out["step"] = _float_col(cols, "step", n)
    out["episode"] = _float_col(cols, "episode", n)
    std = np.nan_to_num(out["q_std"], nan=0.0)
    out["q_lo"] = out["q_mean"] - std
    out["q_hi"] = out["q_mean"] + std
    roller.apply(out)
    out["sid"] = np.full(n, sid, dtype=np.int64)
    return {name: out[name] for name in MODEL_SOURCE}


def empty(columns: Iterable[str]) -> dict[str, list]:
    return {name: [] for name in columns}


def concat(chunks: Sequence[Mapping[str, np.ndarray]], columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Join several column chunks (streamed sections) into one, column by column."""
    if not chunks:
        return {name: np.empty(0) for name in columns}
    return {name: np.concatenate([np.asarray(c[name]) for c in chunks]) for name in columns}

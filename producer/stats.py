"""Local statistics of a run, answered from memory without a round trip.

All-time figures (counts, sums, extremes) are running aggregates updated once per packed
batch with numpy; recent figures come from a bounded window of the latest sections, turned
into dicts only when asked, so memory stays flat however long the run and the sender
thread does no per-row Python work here.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from traindash.reports import LOWER_IS_BETTER
from traindash.wire import RecordKind, Section

RECENT = 50
FOLD_ROWS = 8192


def _row(section: Section, i: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, values in section.cols.items():
        if name == "seq":
            continue
        value = values[i]
        if name == "extra":
            if isinstance(value, dict):
                out.update(value)
        elif isinstance(value, np.generic):
            out[name] = value.item()
        else:
            out[name] = value
    return out


class Window:
    """The latest ``size`` records of one kind, kept as the sections they came in."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.sections: deque[Section] = deque()
        self.rows = 0

    def add(self, section: Section) -> None:
        self.sections.append(section)
        self.rows += len(section)
        while self.sections and self.rows - len(self.sections[0]) >= self.size:
            self.rows -= len(self.sections.popleft())

    def last(self, k: int | None = None) -> list[dict[str, Any]]:
        k = self.size if k is None else min(k, self.size)
        out: list[dict[str, Any]] = []
        for section in reversed(self.sections):
            n = len(section)
            take = min(n, k - len(out))
            out.extend(_row(section, i) for i in range(n - 1, n - 1 - take, -1))
            if len(out) >= k:
                break
        out.reverse()
        return out

    def column(self, name: str, k: int) -> list[float]:
        values: list[float] = []
        for section in reversed(self.sections):
            col = section.cols.get(name)
            if not isinstance(col, np.ndarray):
                continue
            values[:0] = col[-(k - len(values)) :].tolist()
            if len(values) >= k:
                break
        return values

    def clear(self) -> None:
        self.sections.clear()
        self.rows = 0


class RunStats:
    """Running aggregates and recent windows for one MetricsLogger."""

    def __init__(self, history: int) -> None:
        self.lock = threading.Lock()
        self.started = time.time()
        self.episodes = Window(history)
        self.models = Window(history)
        self.n_episodes = 0
        self.n_models = 0
        self.profit_sum = 0.0
        self._unfolded: list[Section] = []
        self._unfolded_rows = 0
        # name -> (min value, its row, max value, its row); rows are built once per batch
        self.extremes: dict[str, tuple[float, dict, float, dict]] = {}

    def update(self, sections: list[Section]) -> None:
        """Called by the sender for every packed batch: only bookkeeping, no reductions."""
        with self.lock:
            for section in sections:
                if section.kind is RecordKind.EPISODE:
                    self.episodes.add(section)
                    self.n_episodes += len(section)
                elif section.kind is RecordKind.MODEL:
                    # Q-value lists are Python objects (~0.5 kB a row); statistics need only
                    # the numeric columns, so the window keeps those.
                    section = Section(
                        section.kind, {k: v for k, v in section.cols.items() if isinstance(v, np.ndarray)}
                    )
                    self.models.add(section)
                    self.n_models += len(section)
                else:
                    continue
                self._unfolded.append(section)
                self._unfolded_rows += len(section)
            if self._unfolded_rows >= FOLD_ROWS:
                self._fold()

    def _fold(self) -> None:
        """Reduce the queued sections into the all-time figures (lock held).

        Sections with the same columns are concatenated first, so the cost is a few numpy
        calls per column per few thousand rows, not per batch.
        """
        if not self._unfolded:
            return
        groups: dict[tuple, list[Section]] = {}
        for section in self._unfolded:
            groups.setdefault((section.kind, tuple(section.cols)), []).append(section)
        self._unfolded = []
        self._unfolded_rows = 0
        for (kind, names), parts in groups.items():
            offsets = np.cumsum([0] + [len(p) for p in parts])
            for name in names:
                if name in ("seq", "ts", "step") or not isinstance(parts[0].cols[name], np.ndarray):
                    continue
                values = np.concatenate([np.asarray(p.cols[name], dtype=np.float64) for p in parts])
                if kind is RecordKind.EPISODE and name == "profit":
                    with np.errstate(over="ignore", invalid="ignore"):  # ±inf and huge profits are data
                        self.profit_sum += float(np.nansum(values))
                if np.isnan(values).all():
                    continue
                lo, hi = int(np.nanargmin(values)), int(np.nanargmax(values))
                self._extreme(name, float(values[lo]), parts, offsets, lo, float(values[hi]), hi)

    def _extreme(
        self, name: str, lo_v: float, parts: list[Section], offsets: np.ndarray, lo: int, hi_v: float, hi: int
    ) -> None:
        def row(i: int) -> dict[str, Any]:
            k = int(np.searchsorted(offsets, i, side="right")) - 1
            return _row(parts[k], i - int(offsets[k]))

        old = self.extremes.get(name)
        if old is None:
            self.extremes[name] = (lo_v, row(lo), hi_v, row(hi))
            return
        new_lo = (lo_v, row(lo)) if lo_v < old[0] else (old[0], old[1])
        new_hi = (hi_v, row(hi)) if hi_v > old[2] else (old[2], old[3])
        self.extremes[name] = (*new_lo, *new_hi)

    def best_record(self, metric: str) -> dict[str, Any] | None:
        with self.lock:
            self._fold()
            found = self.extremes.get(metric)
        if found is None:
            return None
        return dict(found[1] if metric in LOWER_IS_BETTER else found[3])

    def best_value(self, metric: str) -> float | None:
        found = self.extremes.get(metric)
        if found is None:
            return None
        return found[0] if metric in LOWER_IS_BETTER else found[2]

    def latest_episode(self) -> dict[str, Any]:
        with self.lock:
            rows = self.episodes.last(1)
        return rows[0] if rows else {}

    def recent_episodes(self) -> list[dict[str, Any]]:
        with self.lock:
            return self.episodes.last()

    def window(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The recent episodes and model updates, oldest first."""
        with self.lock:
            return self.episodes.last(), self.models.last()

    def smoothed(self, name: str, window: int) -> float:
        with self.lock:
            values = self.episodes.column(name, window) or self.models.column(name, window)
        finite = [v for v in values if math.isfinite(v)]
        with np.errstate(over="ignore"):  # finite values near the largest double may sum to inf
            return float(np.mean(finite)) if finite else 0.0

    def statistics(self) -> dict[str, Any]:
        with self.lock:
            self._fold()
            n, m = self.n_episodes, self.n_models
            profit_sum = self.profit_sum
            latest = (self.episodes.last(1) or [{}])[0]
            recent = {k: self.episodes.column(k, RECENT) for k in ("profit", "sharpe", "win_rate")}
            losses = self.models.column("loss", 100)
            best = {k: self.best_value(k) for k in ("profit", "sharpe", "loss")}
            best_row = self.extremes.get("profit", (0, {}, 0, {}))[3]
            max_dd = self.extremes.get("drawdown", (0.0, {}, 0.0, {}))[2]
        elapsed = time.time() - self.started

        def mean(values: list[float]) -> float:
            finite = [v for v in values if math.isfinite(v)]
            with np.errstate(over="ignore"):  # finite values near the largest double may sum to inf
                return float(np.mean(finite)) if finite else 0.0

        return {
            "total_episodes": n,
            "current_episode": latest.get("episode", 0),
            "latest_profit": latest.get("profit", 0.0),
            "best_profit": best["profit"] if best["profit"] is not None else 0.0,
            "best_episode": best_row.get("episode", 0),
            "avg_profit": profit_sum / n if n else 0.0,
            "recent_avg_profit": mean(recent["profit"]),
            "total_profit": profit_sum,
            "latest_sharpe": latest.get("sharpe", 0.0),
            "best_sharpe": best["sharpe"] if best["sharpe"] is not None else 0.0,
            "avg_sharpe": mean(recent["sharpe"]),
            "avg_win_rate": mean(recent["win_rate"]),
            "max_drawdown": max_dd,
            "current_epsilon": latest.get("epsilon", 0.0),
            "current_learning_rate": latest.get("learning_rate", 0.0),
            "total_model_updates": m,
            "latest_loss": losses[-1] if losses else 0.0,
            "avg_loss": mean(losses),
            "min_loss": best["loss"] if best["loss"] is not None else 0.0,
            "training_time": elapsed,
            "episodes_per_second": n / elapsed if elapsed > 0 else 0.0,
        }

    def clear_window(self) -> None:
        with self.lock:
            self.episodes.clear()

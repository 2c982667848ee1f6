"""What ``traindash top`` shows, kept from committed rows: pure, no terminal and no sockets.

The view loads each run once through the query socket, then applies every committed section
the collector publishes on the rows socket (push). Only the runs' states (running, stalled,
lost), which the collector decides from heartbeats it does not publish, are refreshed by a
light query every few seconds.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from traindash import wire

SPARK = "▁▂▃▄▅▆▇█"
TREND_POINTS = 60
RATE_WINDOW_S = 10.0
ALERTS_KEPT = 20


def sparkline(values: list[float], width: int) -> str:
    """The last ``width`` finite values as block characters, scaled to their own range."""
    points = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)][-width:]
    if not points:
        return ""
    lo, hi = min(points), max(points)
    span = hi - lo
    top = len(SPARK) - 1
    return "".join(SPARK[0 if span == 0 else round((v - lo) / span * top)] for v in points)


def number(value: float | None, digits: int = 4) -> str:
    """A short, readable number for a narrow column."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


@dataclass
class RunView:
    """One run as the terminal shows it."""

    run_id: str
    name: str = ""
    experiment: str = ""
    status: str = "running"
    objective: str = "profit"
    episodes: int = 0
    episode: int | None = None
    best: float | None = None
    trend: deque[float] = field(default_factory=lambda: deque(maxlen=TREND_POINTS))
    arrivals: deque[tuple[float, int]] = field(default_factory=deque)
    gpu_util: float | None = None
    last_row: float = 0.0

    @property
    def last(self) -> float | None:
        return self.trend[-1] if self.trend else None

    def rate(self, now: float) -> float:
        """Episodes per second over the last few seconds of arrivals."""
        while self.arrivals and self.arrivals[0][0] < now - RATE_WINDOW_S:
            self.arrivals.popleft()
        if not self.arrivals:
            return 0.0
        return sum(n for _, n in self.arrivals) / RATE_WINDOW_S


@dataclass
class AlertLine:
    ts: float
    level: str
    run_id: str
    title: str


class TopState:
    """Runs and alerts, updated from the collector's committed rows."""

    def __init__(self) -> None:
        self.runs: dict[str, RunView] = {}
        self.alerts: deque[AlertLine] = deque(maxlen=ALERTS_KEPT)
        self.rows_seen = 0

    def run(self, run_id: str) -> RunView:
        view = self.runs.get(run_id)
        if view is None:
            view = self.runs[run_id] = RunView(run_id, name=run_id)
        return view

    def load_runs(self, rows: list[dict[str, Any]]) -> None:
        """Runs as the collector lists them (name, status, counts, recent objective values)."""
        for r in rows:
            view = self.run(r["run_id"])
            view.name = r.get("name") or view.name
            view.experiment = r.get("experiment") or ""
            view.status = r.get("status") or view.status
            view.objective = r.get("objective") or view.objective
            if r.get("episodes") is not None:
                view.episodes = max(view.episodes, int(r["episodes"]))
            if r.get("episode") is not None and view.episode is None:
                view.episode = int(r["episode"])
            if r.get("best") is not None:
                view.best = r["best"] if view.best is None else max(view.best, r["best"])
            if r.get("trend") and not view.trend:
                view.trend.extend(float(v) for v in r["trend"] if v is not None)
            if r.get("gpu_util") is not None:
                view.gpu_util = float(r["gpu_util"])

    def set_statuses(self, statuses: dict[str, str]) -> None:
        for run_id, status in statuses.items():
            if run_id in self.runs and status:
                self.runs[run_id].status = status

    def apply(self, rows: wire.Rows, now: float | None = None) -> None:
        """One committed section from the rows socket."""
        now = time.time() if now is None else now
        section = rows.section
        n = len(section)
        self.rows_seen += n
        cols = section.cols
        kind = section.kind
        if kind is wire.RecordKind.ALERT:
            for i in range(n):
                self.alerts.append(
                    AlertLine(
                        float(cols["ts"][i]),
                        str(_at(cols, "level", i) or ""),
                        rows.run_id,
                        str(_at(cols, "title", i) or _at(cols, "message", i) or ""),
                    )
                )
            return
        view = self.run(rows.run_id)
        view.last_row = now
        if kind is wire.RecordKind.RUN:
            view.name = str(_at(cols, "name", n - 1) or view.name)
            view.experiment = str(_at(cols, "experiment", n - 1) or view.experiment)
            view.objective = str(_at(cols, "objective", n - 1) or view.objective)
            view.status = "running"
        elif kind is wire.RecordKind.END:
            view.status = str(_at(cols, "status", n - 1) or "finished")
        elif kind is wire.RecordKind.EPISODE:
            view.episodes += n
            view.arrivals.append((now, n))
            episodes = cols.get("episode")
            if episodes is not None and n:
                view.episode = int(episodes[n - 1])
            values = cols.get(view.objective)
            if values is not None:
                for i in range(n):
                    v = values[i]
                    if v is None:
                        continue
                    v = float(v)
                    view.trend.append(v)
                    if math.isfinite(v) and (view.best is None or v > view.best):
                        view.best = v
        elif kind.value == "system":  # system metrics, where the producer samples them
            util = cols.get("gpu_util_percent")
            if util is not None and n and util[n - 1] is not None:
                view.gpu_util = float(util[n - 1])

    def ordered(self) -> list[RunView]:
        """Live runs first, then the newest."""
        live = ("running", "stalled")
        return sorted(self.runs.values(), key=lambda v: (v.status not in live, -v.last_row, v.name))


def _at(cols: dict[str, Any], name: str, i: int) -> Any:
    values = cols.get(name)
    if values is None or i < 0 or i >= len(values):
        return None
    return values[i]

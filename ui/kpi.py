"""KPI cards: the six figures the guide lists and the rules that colour them.

Colour rules (``good`` green, ``warn`` yellow, ``bad`` red; NaN/Inf are always red):

* Current episode: green while the run is ``running`` (or ``finished``), yellow when
  ``stalled`` (no heartbeat for a few seconds), red when ``lost`` or ``crashed``.
* Latest profit, best profit, recent average (last 50): green above 0, yellow from
  ``min_profit_warning`` (default -500, the guide's alert threshold) up to 0, red below it.
* Best episode: green if the best profit came within the last 50 episodes, yellow within
  the last ``no_improvement_episodes`` (default 100, the guide's alert threshold), red when
  older (training has stopped improving).
* Sharpe (mean of the last 10): green at 1.0 or more, yellow from 0 to 1.0, red below 0
  (the same 0 and 1.0 lines as the Sharpe plot).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

RECENT = 50
SHARPE_RECENT = 10
MIN_PROFIT_WARNING = -500.0
NO_IMPROVEMENT_EPISODES = 100
FRESH_BEST_EPISODES = 50


@dataclass(frozen=True)
class Card:
    """One KPI card: its label, the value as text and its level ('good', 'warn', 'bad', 'none')."""

    key: str
    label: str
    text: str
    level: str


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def profit_level(value: float | None, warn_below: float = MIN_PROFIT_WARNING) -> str:
    if value is None:
        return "none"
    if not _finite(value):
        return "bad"
    if value > 0:
        return "good"
    return "warn" if value >= warn_below else "bad"


def sharpe_level(value: float | None) -> str:
    if value is None:
        return "none"
    if not _finite(value):
        return "bad"
    if value >= 1.0:
        return "good"
    return "warn" if value >= 0 else "bad"


def status_level(status: str | None) -> str:
    return {"running": "good", "finished": "good", "stalled": "warn", "lost": "bad", "crashed": "bad"}.get(
        status or "", "none"
    )


def best_episode_level(
    best_episode: float | None, current: float | None, patience: int = NO_IMPROVEMENT_EPISODES
) -> str:
    if best_episode is None or current is None:
        return "none"
    since = current - best_episode
    if since <= FRESH_BEST_EPISODES:
        return "good"
    return "warn" if since <= patience else "bad"


def _fmt(x: Any, spec: str) -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    return format(x, spec)


@dataclass
class KpiState:
    """Running KPI figures of one run: seeded from SQL on load, then fed streamed rows."""

    episodes: int = 0
    episode: float | None = None
    profit: float | None = None
    best_profit: float | None = None
    best_episode: float | None = None
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    recent_sharpe: deque = field(default_factory=lambda: deque(maxlen=SHARPE_RECENT))
    # The column ``profit``, ``best_profit`` and ``recent`` follow: the run's objective.
    objective: str = "profit"

    @classmethod
    def from_record(cls, rec: dict[str, Any], objective: str = "profit") -> KpiState:
        """From the row of ``history.kpi_sql`` (run with the same ``objective``)."""
        state = cls(
            objective=objective,
            episodes=int(rec.get("n") or 0),
            episode=rec.get("episode"),
            profit=rec.get("profit"),
            best_profit=rec.get("best_profit"),
            best_episode=rec.get("best_episode"),
        )
        state.recent.extend(_nan(v) for v in rec.get("recent") or [])
        state.recent_sharpe.extend(_nan(v) for v in rec.get("recent_sharpe") or [])
        return state

    def update(self, episodes: Iterable[float], profits: Iterable[float], sharpes: Iterable[float]) -> None:
        for ep, profit, sharpe in zip(episodes, profits, sharpes, strict=True):
            self.episodes += 1
            self.episode, self.profit = ep, profit
            if _finite(profit) and (self.best_profit is None or profit > self.best_profit):
                self.best_profit, self.best_episode = profit, ep
            self.recent.append(profit)
            self.recent_sharpe.append(sharpe)

    @property
    def recent_average(self) -> float | None:
        return sum(self.recent) / len(self.recent) if self.recent else None

    @property
    def sharpe(self) -> float | None:
        return sum(self.recent_sharpe) / len(self.recent_sharpe) if self.recent_sharpe else None


def _nan(v: Any) -> float:
    return math.nan if v is None else float(v)


def cards(
    state: KpiState,
    status: str | None,
    min_profit_warning: float = MIN_PROFIT_WARNING,
    patience: int = NO_IMPROVEMENT_EPISODES,
) -> list[Card]:
    """The six cards for one run, in the guide's order."""
    ep = None if state.episode is None else int(state.episode)
    best_ep = None if state.best_episode is None else int(state.best_episode)
    what = state.objective.replace("_", " ")
    return [
        Card("episode", "Current episode", _fmt(ep, ","), status_level(status)),
        Card(
            "profit",
            f"Latest {what}",
            _fmt(state.profit, ",.2f"),
            profit_level(state.profit, min_profit_warning),
        ),
        Card(
            "best_profit",
            f"Best {what}",
            _fmt(state.best_profit, ",.2f"),
            profit_level(state.best_profit, min_profit_warning),
        ),
        Card(
            "best_episode",
            "Best episode",
            _fmt(best_ep, ","),
            best_episode_level(state.best_episode, state.episode, patience),
        ),
        Card(
            "recent",
            f"Recent average ({RECENT})",
            _fmt(state.recent_average, ",.2f"),
            profit_level(state.recent_average, min_profit_warning),
        ),
        Card("sharpe", "Sharpe ratio", _fmt(state.sharpe, ".2f"), sharpe_level(state.sharpe)),
    ]

"""History on page load: SQL that downsamples long runs inside DuckDB, and the fetches.

A run with more rows than ``max_points`` is cut into equal buckets of ``seq``; each bucket
keeps its first and last row, the rows holding each plotted metric's minimum and maximum,
and one row with a NaN/Inf per metric if there is one. So spikes, the ends of the run and
bad values survive, and the browser gets at most ``max_points`` rows per run and series.
Smoothed lines are exact trailing means when every row is sent, bucket means otherwise
(a bucket then spans more rows than the rolling window, and no window sort is needed).
The SQL builders are pure; ``fetch_*`` do the I/O through a :class:`QueryClient`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from traindash.query import QueryClient, sql_literal
from traindash.ui.kpi import RECENT
from traindash.ui.series import (
    EPISODE_COLUMNS,
    EPISODE_ROLLING,
    MODEL_COLUMNS,
    MODEL_ROLLING,
    SHARPE_WINDOW,
    WIN_RATE_WINDOW,
)

MAX_POINTS = 4000

# Raw metrics whose per-bucket minimum and maximum rows are kept when downsampling.
EPISODE_EXTREMES = ("profit", "sharpe", "win_rate", "drawdown")
MODEL_EXTREMES = ("loss", "q_mean")
# How many rows before a zoomed window the exact rolling means need.
LOOKBACK = max(w for _, w, _ in (*EPISODE_ROLLING.values(), *MODEL_ROLLING.values()))


@dataclass(frozen=True)
class Series:
    """One table's history shape: the raw select, x column, rolling means and extremes."""

    table: str
    select: str
    x: str
    rolling: dict[str, tuple[str, int, float]]
    extremes: tuple[str, ...]
    columns: tuple[str, ...]


EPISODES = Series(
    "episodes",
    "seq, epoch_us(ts) / 1e6 AS ts, episode::DOUBLE AS episode, profit, sharpe, win_rate, drawdown, "
    "epsilon, learning_rate",
    "episode",
    EPISODE_ROLLING,
    EPISODE_EXTREMES,
    EPISODE_COLUMNS,
)
MODEL = Series(
    "model_metrics",
    "seq, epoch_us(ts) / 1e6 AS ts, step::DOUBLE AS step, episode::DOUBLE AS episode, loss, q_mean, q_std, "
    "q_mean - coalesce(q_std, 0) AS q_lo, q_mean + coalesce(q_std, 0) AS q_hi",
    "step",
    MODEL_ROLLING,
    MODEL_EXTREMES,
    MODEL_COLUMNS,
)


def _where(series: Series, run_id: str, lo: float | None, hi: float | None) -> str:
    cond = [f"run_id = {sql_literal(run_id)}"]
    if lo is not None:
        cond.append(f"{series.x} >= {float(lo)!r}")
    if hi is not None:
        cond.append(f"{series.x} <= {float(hi)!r}")
    return " AND ".join(cond)


def count_sql(series: Series, run_id: str, lo: float | None = None, hi: float | None = None) -> str:
    """Rows of a run (within ``[lo, hi]`` on the x axis): decides exact or downsampled."""
    return f"SELECT count(*) AS n FROM {series.table} WHERE {_where(series, run_id, lo, hi)}"


def exact_sql(series: Series, run_id: str, lo: float | None = None, hi: float | None = None) -> str:
    """Every row in range, with trailing rolling means (as ``ui.series`` continues them).

    The windows start ``LOOKBACK`` rows before ``lo`` so the first rows shown average the
    same rows they would in the whole run.
    """
    lit = sql_literal(run_id)
    start = "0"
    if lo is not None:
        start = (
            f"coalesce((SELECT min(seq) FROM (SELECT seq FROM {series.table} WHERE run_id = {lit} "
            f"AND {series.x} < {float(lo)!r} ORDER BY seq DESC LIMIT {LOOKBACK})), 0)"
        )
    rolling = []
    for derived, (column, window, scale) in series.rolling.items():
        expr = f"avg({column}) OVER (ORDER BY seq ROWS BETWEEN {window - 1} PRECEDING AND CURRENT ROW)"
        rolling.append(f"{expr} * {scale!r} AS {derived}")
    return f"""WITH base AS (
  SELECT {series.select}, {", ".join(rolling)}
  FROM {series.table} WHERE run_id = {lit} AND seq >= {start}
  {"AND " + series.x + " <= " + repr(float(hi)) if hi is not None else ""})
SELECT {", ".join(series.columns)} FROM base
{"WHERE " + series.x + " >= " + repr(float(lo)) if lo is not None else ""} ORDER BY seq"""


def bucketed_sql(
    series: Series,
    run_id: str,
    max_points: int = MAX_POINTS,
    lo: float | None = None,
    hi: float | None = None,
) -> str:
    """At most ``max_points`` rows: equal seq buckets keep their first and last rows, each
    metric's min and max rows and a non-finite row per metric; the smoothed columns are the
    bucket means (each bucket spans far more rows than the rolling windows)."""
    keeps = ["min(seq)", "max(seq)"]
    for m in series.extremes:
        keeps += [
            f"arg_min(seq, {m}) FILTER (WHERE isfinite({m}))",
            f"arg_max(seq, {m}) FILTER (WHERE isfinite({m}))",
            f"min(seq) FILTER (WHERE NOT isfinite({m}))",
        ]
    buckets = max(1, max_points // (2 + 2 * len(series.extremes)))
    means = ", ".join(
        f"avg({column}) * {scale!r} AS {derived}" for derived, (column, _w, scale) in series.rolling.items()
    )
    derived = tuple(series.rolling)
    picked = ", ".join(f"a.{c}" if c in derived else f"k.{c}" for c in series.columns)
    return f"""WITH win AS (SELECT {series.select} FROM {series.table}
  WHERE {_where(series, run_id, lo, hi)}),
bounds AS (SELECT min(seq) AS s0, max(seq) AS s1 FROM win),
keyed AS (SELECT win.*, (seq - s0) * {buckets} // (s1 - s0 + 1) AS bucket FROM win, bounds),
agg AS (SELECT bucket, {means}, unnest([{", ".join(keeps)}]) AS kseq FROM keyed GROUP BY bucket)
SELECT {picked} FROM keyed k
JOIN (SELECT DISTINCT ON (kseq) * FROM agg WHERE kseq IS NOT NULL) a ON k.seq = a.kseq
ORDER BY k.seq"""


def series_sql(
    series: Series,
    run_id: str,
    rows: int,
    max_points: int = MAX_POINTS,
    lo: float | None = None,
    hi: float | None = None,
) -> str:
    """Exact when ``rows`` (the count in range) fits in ``max_points``, else bucketed."""
    if rows <= max_points:
        return exact_sql(series, run_id, lo, hi)
    return bucketed_sql(series, run_id, max_points, lo, hi)


def columns_of(table: pa.Table, columns: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Arrow columns as float/int numpy arrays (nulls become NaN)."""
    out: dict[str, np.ndarray] = {}
    for name in columns:
        col = table.column(name)
        if pa.types.is_integer(col.type):
            out[name] = col.to_numpy(zero_copy_only=False)
        else:
            out[name] = col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
    return out


@dataclass
class History:
    """What page load fetched for one run."""

    episodes: dict[str, np.ndarray]
    model: dict[str, np.ndarray]
    total_episodes: int
    total_model: int
    tails: dict[str, list[float]]
    kpi: dict[str, Any]

    @property
    def downsampled(self) -> bool:
        return self.total_episodes > len(self.episodes["seq"]) or self.total_model > len(self.model["seq"])


def model_summary_sql(run_id: str) -> str:
    """Row count and the last raw losses (seed of the streamed loss smoothing)."""
    lit = sql_literal(run_id)
    window = MODEL_ROLLING["loss_smooth"][1]
    return f"""SELECT (SELECT count(*) FROM model_metrics WHERE run_id = {lit}) AS n,
       (SELECT list(loss ORDER BY seq) FROM (SELECT seq, loss FROM model_metrics
          WHERE run_id = {lit} ORDER BY seq DESC LIMIT {window})) AS loss_tail"""


def _floats(values: Any) -> list[float]:
    return [np.nan if v is None else float(v) for v in values or []]


def fetch_history(client: QueryClient, run_id: str, max_points: int = MAX_POINTS) -> History:
    """Downsampled episode and model history of a run, with totals, KPI figures and the
    raw tails that seed the streamed rolling means (four queries)."""
    kpi = record(client.query(kpi_sql(run_id)))
    summary = record(client.query(model_summary_sql(run_id)))
    n_ep, n_mo = int(kpi.get("n") or 0), int(summary.get("n") or 0)
    ep = columns_of(client.query(series_sql(EPISODES, run_id, n_ep, max_points)), EPISODE_COLUMNS)
    mo = columns_of(client.query(series_sql(MODEL, run_id, n_mo, max_points)), MODEL_COLUMNS)
    tails = {
        "profit": _floats(kpi.get("recent")),
        "sharpe": _floats(kpi.get("recent_sharpe")),
        "win_rate": _floats(kpi.get("recent_win_rate")),
        "loss": _floats(summary.get("loss_tail")),
    }
    return History(ep, mo, n_ep, n_mo, tails, kpi)


def fetch_window(
    client: QueryClient, run_id: str, kind: str, lo: float, hi: float, max_points: int = MAX_POINTS
) -> dict[str, np.ndarray]:
    """Re-query one run's series between ``lo`` and ``hi`` (x units) at a finer grain."""
    series = EPISODES if kind == "episodes" else MODEL
    rows = int(client.query(count_sql(series, run_id, lo, hi)).column(0)[0].as_py())
    return columns_of(client.query(series_sql(series, run_id, rows, max_points, lo, hi)), series.columns)


def alerts_sql(run_ids: list[str], limit: int = 50) -> str:
    """The newest alerts of the given runs (all runs when the list is empty)."""
    cond = f"WHERE run_id IN ({', '.join(sql_literal(r) for r in run_ids)})" if run_ids else ""
    return (
        f"SELECT epoch_us(ts) / 1e6 AS ts, run_id, level, rule, title, message FROM alerts "
        f"{cond} ORDER BY ts DESC LIMIT {int(limit)}"
    )


def kpi_sql(run_id: str) -> str:
    """Whole-run figures the KPI cards need (so they are right even when plots are downsampled)."""
    lit = sql_literal(run_id)
    return f"""SELECT count(*) AS n, arg_max(episode, seq) AS episode, arg_max(profit, seq) AS profit,
       max(profit) FILTER (WHERE isfinite(profit)) AS best_profit,
       arg_max(episode, profit) FILTER (WHERE isfinite(profit)) AS best_episode,
       (SELECT list(profit ORDER BY seq) FROM (SELECT seq, profit FROM episodes
          WHERE run_id = {lit} ORDER BY seq DESC LIMIT {RECENT})) AS recent,
       (SELECT list(sharpe ORDER BY seq) FROM (SELECT seq, sharpe FROM episodes
          WHERE run_id = {lit} ORDER BY seq DESC LIMIT {SHARPE_WINDOW})) AS recent_sharpe,
       (SELECT list(win_rate ORDER BY seq) FROM (SELECT seq, win_rate FROM episodes
          WHERE run_id = {lit} ORDER BY seq DESC LIMIT {WIN_RATE_WINDOW})) AS recent_win_rate
FROM episodes WHERE run_id = {lit}"""


def record(table: pa.Table) -> dict[str, Any]:
    rows = table.to_pylist()
    return rows[0] if rows else {}

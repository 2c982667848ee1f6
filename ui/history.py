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

from dataclasses import dataclass, field
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
from traindash.ui.streams import SeqMarks, stream_names
from traindash.wire import NAME_RE, RecordKind

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


def episode_series(objective: str = "profit") -> Series:
    """The episode history shape, with ``objective`` (a checked column name) as the objective."""
    if not NAME_RE.match(objective):
        raise ValueError(f"not a column name: {objective!r}")
    return Series(
        "episodes",
        "seq, epoch_us(ts) / 1e6 AS ts, episode::DOUBLE AS episode, profit, sharpe, win_rate, drawdown, "
        "epsilon, learning_rate, env_step::DOUBLE AS env_step, epoch_us(ts) / 1e3 AS wall, "
        f'"{objective}" AS objective',
        "episode",
        EPISODE_ROLLING,
        (*EPISODE_EXTREMES, "objective"),
        EPISODE_COLUMNS,
    )


EPISODES = episode_series()
MODEL = Series(
    "model_metrics",
    "seq, epoch_us(ts) / 1e6 AS ts, step::DOUBLE AS step, episode::DOUBLE AS episode, loss, q_mean, q_std, "
    "q_mean - coalesce(q_std, 0) AS q_lo, q_mean + coalesce(q_std, 0) AS q_hi",
    "step",
    MODEL_ROLLING,
    MODEL_EXTREMES,
    MODEL_COLUMNS,
)


def _order(multi: bool, prefix: str = "", desc: bool = False, keys: tuple[str, ...] = ("ts",)) -> str:
    """A run's row order: seq for its only writer; with several streams (a seq space each),
    ``keys`` (time by default), then stream and seq."""
    cols = (*dict.fromkeys((*keys, "stream")), "seq") if multi else ("seq",)
    return ", ".join(f"{prefix}{c}{' DESC' if desc else ''}" for c in cols)


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


def exact_sql(
    series: Series, run_id: str, lo: float | None = None, hi: float | None = None, multi: bool = False
) -> str:
    """Every row in range, with trailing rolling means (as ``ui.series`` continues them).

    The windows start ``LOOKBACK`` rows before ``lo`` so the first rows shown average the
    same rows they would in the whole run (from the run's start with several streams).
    """
    lit = sql_literal(run_id)
    start = "0"
    if lo is not None and not multi:
        start = (
            f"coalesce((SELECT min(seq) FROM (SELECT seq FROM {series.table} WHERE run_id = {lit} "
            f"AND {series.x} < {float(lo)!r} ORDER BY seq DESC LIMIT {LOOKBACK})), 0)"
        )
    rolling = []
    for derived, (column, window, scale) in series.rolling.items():
        frame = f"ROWS BETWEEN {window - 1} PRECEDING AND CURRENT ROW"
        expr = f"avg({column}) OVER (ORDER BY {_order(multi)} {frame})"
        rolling.append(f"{expr} * {scale!r} AS {derived}")
    return f"""WITH base AS (
  SELECT {series.select}{", stream" if multi else ""}, {", ".join(rolling)}
  FROM {series.table} WHERE run_id = {lit} AND seq >= {start}
  {"AND " + series.x + " <= " + repr(float(hi)) if hi is not None else ""})
SELECT {", ".join(series.columns)}{", stream" if multi else ""} FROM base
{"WHERE " + series.x + " >= " + repr(float(lo)) if lo is not None else ""} ORDER BY {_order(multi)}"""


def bucketed_sql(
    series: Series,
    run_id: str,
    max_points: int = MAX_POINTS,
    lo: float | None = None,
    hi: float | None = None,
    multi: bool = False,
) -> str:
    """At most ``max_points`` rows: equal seq buckets keep their first and last rows, each
    metric's min and max rows and a non-finite row per metric; the smoothed columns are the
    bucket means (each bucket spans far more rows than the rolling windows). With several
    streams (``multi``), each stream's seqs are bucketed apart, sharing the budget."""
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
    st, part = (", stream", "stream, ") if multi else ("", "")
    if multi:
        bounds = "stream, min(seq) AS s0, max(seq) AS s1, count(*) OVER () AS ns FROM win GROUP BY stream"
        n, src = (
            f"greatest(1, {buckets} // ns)",
            "win JOIN bounds ON win.stream IS NOT DISTINCT FROM bounds.stream",
        )
    else:
        bounds, n, src = "min(seq) AS s0, max(seq) AS s1 FROM win", str(buckets), "win, bounds"
    return f"""WITH win AS (SELECT {series.select}{st} FROM {series.table}
  WHERE {_where(series, run_id, lo, hi)}),
bounds AS (SELECT {bounds}),
keyed AS (SELECT win.*, (seq - s0) * {n} // (s1 - s0 + 1) AS bucket FROM {src}),
agg AS (SELECT {part}bucket, {means}, unnest([{", ".join(keeps)}]) AS kseq FROM keyed GROUP BY {part}bucket)
SELECT {picked}{", k.stream" if multi else ""} FROM keyed k
JOIN (SELECT DISTINCT ON ({part}kseq) * FROM agg WHERE kseq IS NOT NULL) a
  ON {"k.stream IS NOT DISTINCT FROM a.stream AND " if multi else ""}k.seq = a.kseq
ORDER BY {_order(multi, "k.")}"""


def series_sql(
    series: Series,
    run_id: str,
    rows: int,
    max_points: int = MAX_POINTS,
    lo: float | None = None,
    hi: float | None = None,
    multi: bool = False,
) -> str:
    """Exact when ``rows`` (the count in range) fits in ``max_points``, else bucketed;
    ``multi``: the run has several streams (rows in time order, a ``stream`` column)."""
    if rows <= max_points:
        return exact_sql(series, run_id, lo, hi, multi)
    return bucketed_sql(series, run_id, max_points, lo, hi, multi)


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
    objective: str = "profit"
    scalars: dict[str, dict[str, np.ndarray]] | None = None
    marks: SeqMarks = field(default_factory=SeqMarks)  # the stream ids (``sid``) and seqs shown

    @property
    def downsampled(self) -> bool:
        return self.total_episodes > len(self.episodes["seq"]) or self.total_model > len(self.model["seq"])


def _tail(column: str, table: str, lit: str, n: int, multi: bool) -> str:
    """The last ``n`` values of a run's ``column`` in row order, oldest first."""
    return (
        f"(SELECT list({column} ORDER BY {_order(multi)}) FROM (SELECT {_order(multi)}, {column} FROM "
        f"{table}\n          WHERE run_id = {lit} ORDER BY {_order(multi, desc=True)} LIMIT {n}))"
    )


def model_summary_sql(run_id: str, multi: bool = False) -> str:
    """Row count and the last raw losses (seed of the streamed loss smoothing)."""
    lit = sql_literal(run_id)
    window = MODEL_ROLLING["loss_smooth"][1]
    return f"""SELECT (SELECT count(*) FROM model_metrics WHERE run_id = {lit}) AS n,
       {_tail("loss", "model_metrics", lit, window, multi)} AS loss_tail"""


def _floats(values: Any) -> list[float]:
    return [np.nan if v is None else float(v) for v in values or []]


def fetch_history(client: QueryClient, run_id: str, max_points: int = MAX_POINTS) -> History:
    """Downsampled episode and model history of a run, with totals, KPI figures and the
    raw tails that seed the streamed rolling means (four queries)."""
    objective, multi = fetch_shape(client, run_id)
    kpi = record(client.query(kpi_sql(run_id, objective, multi)))
    summary = record(client.query(model_summary_sql(run_id, multi)))
    n_ep, n_mo = int(kpi.get("n") or 0), int(summary.get("n") or 0)
    episodes, marks = episode_series(objective), SeqMarks()
    ep = _shown(client.query(series_sql(episodes, run_id, n_ep, max_points, multi=multi)), episodes, marks)
    mo = _shown(client.query(series_sql(MODEL, run_id, n_mo, max_points, multi=multi)), MODEL, marks)
    tails = {
        "profit": _floats(kpi.get("recent_profit")),
        "objective": _floats(kpi.get("recent")),
        "sharpe": _floats(kpi.get("recent_sharpe")),
        "win_rate": _floats(kpi.get("recent_win_rate")),
        "loss": _floats(summary.get("loss_tail")),
    }
    scalars = fetch_scalars(client, run_id, multi, marks)
    return History(ep, mo, n_ep, n_mo, tails, kpi, objective, scalars, marks)


def _shown(table: pa.Table, series: Series, marks: SeqMarks) -> dict[str, np.ndarray]:
    """A series' fetched rows with their stream ids; ``marks`` notes them as shown."""
    cols = columns_of(table, series.columns)
    streams = stream_names(table)
    cols["sid"] = marks.sids(streams)
    marks.seed(RecordKind.EPISODE if series.table == "episodes" else RecordKind.MODEL, cols["seq"], streams)
    return cols


SCALAR_POINTS = 2000  # per name, on page load
MAX_SCALAR_NAMES = 64


def scalars_sql(
    run_id: str, max_points: int = SCALAR_POINTS, max_names: int = MAX_SCALAR_NAMES, multi: bool = False
) -> str:
    """A run's scalars, each name downsampled in DuckDB to about ``max_points`` rows: equal
    seq buckets keep their first and last rows and the rows of their min and max value.
    ``multi``: several streams, each (name, stream) bucketed apart, rows in step order."""
    buckets = max(1, max_points // 4)
    lit = sql_literal(run_id)
    if not multi:
        return f"""WITH s AS (SELECT name, seq, step, value, epoch_us(ts) / 1e6 AS ts FROM scalars
  WHERE run_id = {lit}),
n AS (SELECT name, count(*) AS c, min(seq) AS s0, max(seq) AS s1 FROM s GROUP BY name
  ORDER BY name LIMIT {int(max_names)}),
k AS (SELECT s.*, CASE WHEN c <= {int(max_points)} THEN seq
      ELSE (seq - s0) * {buckets} // (s1 - s0 + 1) END AS bucket FROM s JOIN n USING (name)),
p AS (SELECT DISTINCT name, unnest([min(seq), max(seq), arg_min(seq, value), arg_max(seq, value)]) AS kseq
  FROM k GROUP BY name, bucket)
SELECT k.name, k.seq, k.step::DOUBLE AS step, k.value, k.ts
FROM k JOIN p ON k.name = p.name AND k.seq = p.kseq ORDER BY k.name, k.seq"""
    same = "s.name = n.name AND s.stream IS NOT DISTINCT FROM n.stream"
    return f"""WITH s AS (SELECT name, stream, seq, step, value, epoch_us(ts) / 1e6 AS ts FROM scalars
  WHERE run_id = {lit} AND name IN (SELECT DISTINCT name FROM scalars WHERE run_id = {lit}
  ORDER BY name LIMIT {int(max_names)})),
n AS (SELECT name, stream, count(*) AS c, min(seq) AS s0, max(seq) AS s1,
  count(*) OVER (PARTITION BY name) AS ns FROM s GROUP BY name, stream),
k AS (SELECT s.*, CASE WHEN c * ns <= {int(max_points)} THEN seq
      ELSE (seq - s0) * greatest(1, {buckets} // ns) // (s1 - s0 + 1) END AS bucket FROM s JOIN n ON {same}),
p AS (SELECT DISTINCT name, stream, unnest([min(seq), max(seq), arg_min(seq, value), arg_max(seq, value)])
  AS kseq FROM k GROUP BY name, stream, bucket)
SELECT k.name, k.seq, k.step::DOUBLE AS step, k.value, k.ts, k.stream
FROM k JOIN p ON k.name = p.name AND k.stream IS NOT DISTINCT FROM p.stream AND k.seq = p.kseq
ORDER BY k.name, {_order(True, "k.", keys=("step", "ts"))}"""


def fetch_scalars(
    client: QueryClient, run_id: str, multi: bool = False, marks: SeqMarks | None = None
) -> dict[str, dict[str, np.ndarray]]:
    """name -> columns (seq, step, value, ts, and sid: stream ids of ``marks``) of a run's
    scalars, downsampled."""
    table = client.query(scalars_sql(run_id, multi=multi))
    if not table.num_rows:
        return {}
    names = np.asarray(table.column("name").to_pylist(), dtype=object)
    cols = columns_of(table, ("seq", "step", "value", "ts"))
    cols["sid"] = (marks or SeqMarks()).sids(stream_names(table))
    out = {}
    cuts = np.flatnonzero(names[1:] != names[:-1]) + 1
    for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(names)], strict=True):
        out[str(names[lo])] = {k: v[lo:hi] for k, v in cols.items()}
    return out


def objective_sql(run_id: str) -> str:
    """A run's objective, whether ``episodes`` has that column (a custom one may not yet), and
    whether several streams write the run (``multi``)."""
    return f"""SELECT coalesce(r.objective, 'profit') AS objective,
       (SELECT count(*) FROM information_schema.columns c WHERE c.table_name = 'episodes'
          AND lower(c.column_name) = lower(coalesce(r.objective, 'profit'))) > 0 AS present,
       EXISTS (SELECT 1 FROM streams s WHERE s.run_id = r.run_id) AS multi
FROM runs r WHERE r.run_id = {sql_literal(run_id)}"""


def fetch_shape(client: QueryClient, run_id: str) -> tuple[str, bool]:
    """The run's objective column and whether several streams write it."""
    rec = record(client.query(objective_sql(run_id)))
    objective = rec.get("objective") or "profit"
    return objective if rec.get("present") and NAME_RE.match(objective) else "profit", bool(rec.get("multi"))


def fetch_objective(client: QueryClient, run_id: str) -> str:
    return fetch_shape(client, run_id)[0]


def fetch_window(
    client: QueryClient, run_id: str, kind: str, lo: float, hi: float, max_points: int = MAX_POINTS
) -> dict[str, np.ndarray]:
    """Re-query one run's series between ``lo`` and ``hi`` (x units) at a finer grain; each
    row's stream name is in ``stream`` (an object array)."""
    objective, multi = fetch_shape(client, run_id)
    series = episode_series(objective) if kind == "episodes" else MODEL
    rows = int(client.query(count_sql(series, run_id, lo, hi)).column(0)[0].as_py())
    table = client.query(series_sql(series, run_id, rows, max_points, lo, hi, multi))
    cols = columns_of(table, series.columns)
    cols["stream"] = np.asarray(stream_names(table), dtype=object)
    return cols


def alerts_sql(run_ids: list[str], limit: int = 50) -> str:
    """The newest alerts of the given runs (all runs when the list is empty)."""
    cond = f"WHERE run_id IN ({', '.join(sql_literal(r) for r in run_ids)})" if run_ids else ""
    return (
        f"SELECT epoch_us(ts) / 1e6 AS ts, run_id, level, rule, title, message FROM alerts "
        f"{cond} ORDER BY ts DESC LIMIT {int(limit)}"
    )


def kpi_sql(run_id: str, objective: str = "profit", multi: bool = False) -> str:
    """Whole-run figures the KPI cards need (so they are right even when plots are downsampled);
    ``profit``/``best_profit``/``recent`` follow the run's objective column; the latest row is
    the newest in time when several streams write the run (``multi``)."""
    lit = sql_literal(run_id)
    o = f'"{objective}"' if NAME_RE.match(objective) else "profit"
    last = "ts" if multi else "seq"
    return f"""SELECT count(*) AS n, arg_max(episode, {last}) AS episode, arg_max({o}, {last}) AS profit,
       max({o}) FILTER (WHERE isfinite({o})) AS best_profit,
       arg_max(episode, {o}) FILTER (WHERE isfinite({o})) AS best_episode,
       {_tail(o, "episodes", lit, RECENT, multi)} AS recent,
       {_tail("profit", "episodes", lit, RECENT, multi)} AS recent_profit,
       {_tail("sharpe", "episodes", lit, SHARPE_WINDOW, multi)} AS recent_sharpe,
       {_tail("win_rate", "episodes", lit, WIN_RATE_WINDOW, multi)} AS recent_win_rate
FROM episodes WHERE run_id = {lit}"""


def record(table: pa.Table) -> dict[str, Any]:
    rows = table.to_pylist()
    return rows[0] if rows else {}

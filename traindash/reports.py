"""The reports: runs, leaderboard, comparison and export, as SQL written once.

Every reader builds its queries here: the CLI (``traindash runs|leaderboard|compare|export|
status``), the UI (the trainer table, the compare page), the ExperimentTracker, and the
collector, whose ``leaderboard`` view is :data:`LEADERBOARD_VIEW`. So they agree on which
runs they show: :func:`trainer_runs` (runs of trainers, not of services such as the alerts
process) and :func:`shown_runs` (those, less archived and deleted ones).

Metrics follow one rule everywhere: NaN and infinite values are data, but never a best, a
mean, a minimum or a maximum. Nothing here does I/O, and nothing here imports pyarrow (a
shipper process imports this module through the producer's statistics).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from traindash.wire import MANAGE_ACTIONS

TRAINER_ROLE = "trainer"
ARCHIVED, DELETED = "archived", "deleted"
# What each manage action (wire.MANAGE_ACTIONS) sets a run's status to.
STATUS_AFTER: dict[str, str] = dict(zip(MANAGE_ACTIONS, (ARCHIVED, DELETED), strict=True))
HIDDEN_STATUSES = (ARCHIVED, DELETED)
LIVE_STATUSES = ("running", "stalled")
ENDED_STATUSES = ("finished", "crashed")
# Metrics (and leaderboard columns) where lower is better.
LOWER_IS_BETTER = frozenset({"drawdown", "loss", "max_drawdown"})
DEFAULT_METRICS = ("profit", "sharpe", "win_rate", "drawdown", "num_trades")
# Episode columns that are keys, not metrics; and settings, compared only when asked for.
KEY_COLUMNS = frozenset({"run_id", "seq", "ts", "episode", "extra"})
SETTING_COLUMNS = frozenset({"epsilon", "learning_rate"})
# The trainer table's rate: episodes in this many seconds before the newest episode.
RATE_WINDOW_S = 10
EXPORT_TABLES = ("episodes", "model_metrics", "runs", "alerts", "scalars", "summaries", "system")


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def ident(name: str) -> str:
    """A double-quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def in_list(values: Iterable[str]) -> str:
    """``'a', 'b'``: string literals for ``IN (...)``."""
    return ", ".join(sql_literal(v) for v in values)


def _col(alias: str, name: str) -> str:
    return f"{alias}.{name}" if alias else name


def role(alias: str = "") -> str:
    """A run's role; runs stored before roles existed are trainers."""
    return f"coalesce({_col(alias, 'role')}, {sql_literal(TRAINER_ROLE)})"


def trainer_runs(alias: str = "") -> str:
    """Condition on ``runs`` (as ``alias``): a trainer's run, not a service's."""
    return f"{role(alias)} = {sql_literal(TRAINER_ROLE)}"


def shown_runs(alias: str = "") -> str:
    """Condition on ``runs``: what the leaderboard and the run lists show (not archived or deleted)."""
    return (
        f"{trainer_runs(alias)} AND coalesce({_col(alias, 'status')}, '') NOT IN ({in_list(HIDDEN_STATUSES)})"
    )


def _finite(value: str) -> str:
    return f"FILTER (WHERE {value} IS NOT NULL AND isfinite({value}))"


def best(value: str, column: str) -> str:
    """The best finite value of ``value`` (an expression over ``column``)."""
    return f"{'min' if column in LOWER_IS_BETTER else 'max'}({value}) {_finite(value)}"


def mean(value: str) -> str:
    return f"avg({value}) {_finite(value)}"


# -- the leaderboard ----------------------------------------------------------------------
# One run per row: its trainer runs shown, with at least one episode.
LEADERBOARD_FROM = f"FROM runs r JOIN episodes e USING (run_id) WHERE {shown_runs('r')}"

# The value of a run's objective in an episode row (``runs.objective`` names the column;
# a view cannot pick a column by name, so the episode columns are listed).
OBJECTIVE_VALUE = """CASE coalesce(r.objective, 'profit')
        WHEN 'profit' THEN e.profit WHEN 'episode_return' THEN e.episode_return
        WHEN 'sharpe' THEN e.sharpe WHEN 'win_rate' THEN e.win_rate
        WHEN 'episode_length' THEN e.episode_length END"""

LEADERBOARD_VIEW = f"""CREATE OR REPLACE VIEW leaderboard AS
    SELECT r.run_id, r.experiment, r.name, r.status, r.started_at,
           count(e.seq) AS episodes, {best("e.profit", "profit")} AS best_profit,
           {mean("e.profit")} AS mean_profit, {best("e.sharpe", "sharpe")} AS best_sharpe,
           {mean("e.win_rate")} AS mean_win_rate,
           max(e.drawdown) {_finite("e.drawdown")} AS max_drawdown,
           arg_max(e.profit, e.seq) AS last_profit,
           coalesce(r.objective, 'profit') AS objective,
           {best(OBJECTIVE_VALUE, "objective")} AS best_objective,
           {mean(OBJECTIVE_VALUE)} AS mean_objective,
           arg_max({OBJECTIVE_VALUE}, e.seq) AS last_objective,
           max(e.env_step) AS env_steps
    {LEADERBOARD_FROM}
    GROUP BY ALL"""

# The view's columns a leaderboard can be sorted by.
LEADERBOARD_METRICS = (
    "best_objective",
    "mean_objective",
    "last_objective",
    "best_profit",
    "mean_profit",
    "last_profit",
    "best_sharpe",
    "mean_win_rate",
    "max_drawdown",
    "episodes",
)


def leaderboard_view_sql(metric: str = "best_profit", limit: int = 50) -> str:
    """The ``leaderboard`` view sorted by one of its columns (the UI's compare page)."""
    if metric not in LEADERBOARD_METRICS:
        raise ValueError(f"unknown leaderboard metric {metric!r}")
    order = "ASC" if metric in LOWER_IS_BETTER else "DESC"
    return f"SELECT * FROM leaderboard ORDER BY {metric} {order} NULLS LAST, run_id LIMIT {int(limit)}"


def leaderboard_sql(column: str, top_n: int = 10) -> str:
    """Runs ranked by their best value of the episodes column ``column`` (already checked).

    Runs with no finite value of it are left out. Columns: run_id, name, experiment,
    status, tags, hyperparameters, episodes, value, best_episode, mean.
    """
    v = f"CAST(e.{ident(column)} AS DOUBLE)"
    order = "ASC" if column in LOWER_IS_BETTER else "DESC"
    pick = "arg_min" if column in LOWER_IS_BETTER else "arg_max"
    return (
        "SELECT r.run_id, r.name, r.experiment, r.status, r.tags, r.hyperparameters, "
        f"count(e.seq) AS episodes, {best(v, column)} AS value, "
        f"{pick}(e.episode, {v}) {_finite(v)} AS best_episode, {mean(v)} AS mean "
        f"{LEADERBOARD_FROM} GROUP BY ALL HAVING value IS NOT NULL "
        f"ORDER BY value {order}, r.run_id LIMIT {int(top_n)}"
    )


# -- run lists ------------------------------------------------------------------------------
def runs_sql(include_hidden: bool = False) -> str:
    """Trainer runs, newest first, with episode counts and best profit (``traindash runs``)."""
    where = trainer_runs("r") if include_hidden else shown_runs("r")
    return (
        "SELECT r.run_id, r.experiment, r.name, r.status, r.started_at, r.ended_at, r.tags, "
        f"count(e.seq) AS episodes, {best('e.profit', 'profit')} AS best_profit, r.host "
        f"FROM runs r LEFT JOIN episodes e USING (run_id) WHERE {where} "
        "GROUP BY ALL ORDER BY r.started_at DESC NULLS LAST, r.run_id"
    )


def trainer_table_sql() -> str:
    """The UI's trainer table: live runs first, then newest, with episodes and recent rate."""
    return f"""SELECT r.run_id, coalesce(r.name, r.run_id) AS name, r.experiment, r.host, r.pid,
       r.status, epoch_us(r.started_at) / 1e6 AS started, epoch_us(r.last_seen) / 1e6 AS last_seen,
       coalesce(e.n, 0) AS episodes, coalesce(e.recent, 0) AS recent, e.last_ts,
       coalesce(r.objective, 'profit') AS objective, e.sps
FROM runs r LEFT JOIN (
  SELECT run_id, count(*) AS n, epoch_us(max(ts)) / 1e6 AS last_ts,
         count(*) FILTER (WHERE ts >= (SELECT max(ts) FROM episodes) - INTERVAL {RATE_WINDOW_S} SECOND)
           AS recent,
         -- environment steps per second over the run's episodes that carry an env step
         (max(env_step) - min(env_step)) / nullif(epoch_us(max(ts) FILTER (WHERE env_step IS NOT NULL))
           - epoch_us(min(ts) FILTER (WHERE env_step IS NOT NULL)), 0) * 1e6 AS sps
  FROM episodes GROUP BY run_id) e USING (run_id)
WHERE {shown_runs("r")}
ORDER BY (r.status IN ({in_list(LIVE_STATUSES)})) DESC, r.started_at DESC NULLS LAST, r.run_id"""


def stream_table_sql() -> str:
    """The fleet view's streams of the shown runs: worker, host, state, episodes and recent rate."""
    return f"""SELECT s.run_id, s.stream, s.worker, s.host, s.pid, s.status,
       epoch_us(s.last_seen) / 1e6 AS last_seen, coalesce(e.n, 0) AS episodes, coalesce(e.recent, 0) AS recent
FROM streams s LEFT JOIN (
  SELECT run_id, stream, count(*) AS n,
         count(*) FILTER (WHERE ts >= (SELECT max(ts) FROM episodes) - INTERVAL {RATE_WINDOW_S} SECOND)
           AS recent
  FROM episodes WHERE stream IS NOT NULL GROUP BY ALL) e USING (run_id, stream)
WHERE s.run_id IN (SELECT r.run_id FROM runs r WHERE {shown_runs("r")})
ORDER BY s.run_id, s.worker, s.started_at NULLS LAST, s.stream"""


def status_sql() -> str:
    """Trainer runs counted by status (``traindash status``)."""
    return (
        "SELECT status, count(*) AS runs, max(last_seen) AS last_seen FROM runs "
        f"WHERE {trainer_runs()} GROUP BY status ORDER BY status"
    )


def runs_by_id_sql(run_ids: Sequence[str]) -> str:
    return f"SELECT * FROM runs WHERE run_id IN ({in_list(run_ids)})"


def ended_before_sql(cutoff_us: int, statuses: Sequence[str] | None = None) -> str:
    """Ended trainer runs last heard of before ``cutoff_us`` (Unix µs), oldest first; by
    default those shown, else those with one of ``statuses``."""
    which = f"{trainer_runs()} AND status IN ({in_list(statuses)})" if statuses else shown_runs()
    return (
        f"SELECT run_id FROM runs WHERE {which} "
        f"AND coalesce(ended_at, last_seen, started_at) < make_timestamp({int(cutoff_us)}) "
        f"AND status NOT IN ({in_list(LIVE_STATUSES)}) ORDER BY started_at"
    )


# -- comparison -----------------------------------------------------------------------------
EPISODE_COLUMNS_SQL = (
    "SELECT column_name FROM information_schema.columns WHERE "
    "table_name = 'episodes' AND table_schema = 'main' ORDER BY ordinal_position"
)


def metric_columns(columns: Sequence[str], metrics: Sequence[str] | None) -> list[str]:
    """The episodes columns to compare: ``metrics`` (case-insensitive) or, by default, the
    guide's metrics and every custom one. ``columns``: the episodes table's columns."""
    numeric = [c for c in columns if c not in KEY_COLUMNS]
    if metrics is None:
        return list(DEFAULT_METRICS) + [
            c for c in numeric if c not in DEFAULT_METRICS and c not in SETTING_COLUMNS
        ]
    lower = {c.lower(): c for c in numeric}
    unknown = [m for m in metrics if m.lower() not in lower]
    if unknown:
        raise ValueError(f"unknown metric {', '.join(map(repr, unknown))}; episodes has {', '.join(numeric)}")
    return [lower[m.lower()] for m in metrics]


def compare_sql(run_ids: Sequence[str], columns: Sequence[str]) -> str:
    """Per run: episodes, and ``max:``, ``min:``, ``mean:``, ``final:`` of each column."""
    parts = []
    for c in columns:
        v = f"CAST({ident(c)} AS DOUBLE)"
        parts.append(
            f"max({v}) {_finite(v)} AS {ident('max:' + c)}, min({v}) {_finite(v)} AS "
            f"{ident('min:' + c)}, {mean(v)} AS {ident('mean:' + c)}, "
            f"arg_max({v}, seq) FILTER (WHERE {v} IS NOT NULL) AS {ident('final:' + c)}"
        )
    select = ", ".join(["run_id", "count(*) AS episodes", *parts])
    return f"SELECT {select} FROM episodes WHERE run_id IN ({in_list(run_ids)}) GROUP BY run_id"


def comparison(
    run_ids: Sequence[str],
    runs: dict[str, dict[str, Any]],
    stats: dict[str, dict[str, Any]],
    columns: Sequence[str],
) -> dict[str, Any]:
    """``compare_experiments``'s answer from the rows of :func:`runs_by_id_sql` and
    :func:`compare_sql` (each keyed by run_id); every id must be in ``runs``."""
    out: dict[str, Any] = {"experiments": {}, "metrics": {}, "hyperparameters": {}, "best": {}}
    for run_id in run_ids:
        run, st = runs[run_id], stats.get(run_id, {})
        hp = loads(run.get("hyperparameters")) or {}
        out["experiments"][run_id] = {
            "name": run.get("name"),
            "experiment": run.get("experiment"),
            "status": run.get("status"),
            "tags": run.get("tags") or [],
            "description": run.get("description") or "",
            "episodes": st.get("episodes", 0),
            "hyperparameters": hp,
            "final_metrics": loads(run.get("final_metrics")) or {},
        }
        for key, value in hp.items():
            out["hyperparameters"].setdefault(key, {})[run_id] = value
    for c in columns:
        per = {}
        for run_id in run_ids:
            st = stats.get(run_id, {})
            lo, hi = st.get("min:" + c), st.get("max:" + c)
            final = st.get("final:" + c)
            per[run_id] = {
                "best": lo if c in LOWER_IS_BETTER else hi,
                "mean": st.get("mean:" + c),
                "final": None if isinstance(final, float) and not math.isfinite(final) else final,
                "min": lo,
                "max": hi,
            }
        out["metrics"][c] = per
        scored = [(v["best"], i) for i, v in per.items() if v["best"] is not None]
        if scored:
            out["best"][c] = (min if c in LOWER_IS_BETTER else max)(scored)[1]
    return out


def comparison_rows(comparison: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per experiment of a :func:`comparison` (for CSV and tables)."""
    rows = []
    for exp_id, info in comparison["experiments"].items():
        row: dict[str, Any] = {
            "exp_id": exp_id,
            "name": info["name"],
            "status": info["status"],
            "episodes": info["episodes"],
        }
        for metric, per in comparison["metrics"].items():
            for part in ("best", "mean", "final"):
                row[f"{metric}_{part}"] = per[exp_id][part]
        for key, per in comparison["hyperparameters"].items():
            row[f"hp_{key}"] = per.get(exp_id)
        rows.append(row)
    return rows


# -- export ---------------------------------------------------------------------------------
def export_sql(table: str, run_ids: Sequence[str] | None = None) -> str:
    """Every row of one of :data:`EXPORT_TABLES` (of some runs), in a stable order."""
    if table not in EXPORT_TABLES:
        raise ValueError(f"table must be one of {', '.join(EXPORT_TABLES)}")
    where = f" WHERE run_id IN ({in_list(run_ids)})" if run_ids else ""
    order = {"alerts": "ts", "runs": "started_at"}.get(table, "run_id, seq")
    return f"SELECT * FROM {table}{where} ORDER BY {order}"


def loads(text: Any) -> Any:
    """A JSON column's value decoded (DuckDB hands JSON over as text); other values as they are."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text

"""Seeds and sweeps: groups of runs compared with confidence, not by eye (issue 17).

Given anything that answers SQL (``QueryClient``, ``ExperimentTracker``, ``traindash.connect()``,
a DuckDB connection), :func:`compare` groups the runs (:mod:`traindash.groups`) and returns,
for each group:

* its curve on a common x grid (``episode`` or ``env_step``): each run's episodes are
  averaged within grid cells and linearly interpolated between the cells' centroids (where a
  run has fewer points than the grid, that is exact linear interpolation of its points), then
  the IQM, mean or median across the runs is drawn with a 95 % bootstrap band. A group's curve
  covers only ``[max of its runs' first x, min of its runs' last x]``, what every run has
  reached: no run is ever extrapolated;
* its final performance: each run scores the mean of its curve over the last
  ``final_window`` (10 %) of that common range; per group the IQM with a stratified bootstrap
  CI, mean, median and the optimality gap; between groups the probability of improvement
  (definitions as in rliable: :mod:`traindash.rlstats`).

The heavy part runs in DuckDB: one scan for each run's x range, one for per-cell averages on
the grid, so only about one row per run and grid point leaves the database. Nothing is
cached: calling again while runs still go is the live view.

For a notebook: ``group_curves(source, ...)`` and ``final_scores(source, ...)`` return Arrow
tables (``.to_pandas()`` for pandas); ``compare(...)`` returns everything at once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from traindash import rlstats
from traindash.groups import (
    Group,
    Run,
    columns,
    fetch,
    group_runs,
    load_runs,
    metric_column,
    sql_in,
)

X_AXES = ("episode", "env_step")
DEFAULT_METRIC = "profit"
STATS = tuple(rlstats.ROW_STATISTICS)
DEFAULT_POINTS = 1000
FINAL_WINDOW = 0.1
REPS = 2000  # final scores: cheap, so rliable's precision
BAND_REPS = 200  # curves: replications x runs x grid points, kept to well under a second


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Grid:
    """``points`` x values ``lo + k * dx``, shared by every group."""

    lo: float
    dx: float
    points: int

    def x(self, k: np.ndarray) -> np.ndarray:
        return self.lo + k * self.dx

    def within(self, lo: float, hi: float) -> np.ndarray:
        """Indices of the grid points in ``[lo, hi]``, exactly (no rounding past either end)."""
        if self.dx == 0:
            return np.arange(1) if lo <= self.lo <= hi else np.arange(0)
        k = np.arange(
            max(0, math.floor((lo - self.lo) / self.dx) - 1),
            min(self.points, math.ceil((hi - self.lo) / self.dx) + 2),
        )
        xs = self.x(k)
        return k[(xs >= lo) & (xs <= hi)]


def common_grid(ranges: Iterable[tuple[float, float]], points: int) -> Grid | None:
    """One grid over every group's common range: ``points`` points, fewer when the x axis has
    fewer whole steps than that (x is a counter: episodes or env steps)."""
    spans = list(ranges)
    if not spans:
        return None
    lo, hi = min(a for a, _ in spans), max(b for _, b in spans)
    if hi == lo:
        return Grid(lo, 0.0, 1)
    n = max(2, min(points, math.floor(hi - lo) + 1))
    return Grid(lo, (hi - lo) / (n - 1), n)


FLOAT_TYPES = ("DOUBLE", "FLOAT", "REAL")


@dataclass(frozen=True)
class Expr:
    """An ``episodes`` expression, and whether it can hold NaN or infinity."""

    sql: str
    floating: bool

    def finite(self) -> str:
        return f"isfinite({self.sql})" if self.floating else f"{self.sql} IS NOT NULL"


def column_expr(cols: dict[str, dict[str, tuple[str, str]]], name: str) -> Expr:
    kind = cols["episodes"][name.lower()][1].upper()
    return Expr(_ident(name), kind.startswith(FLOAT_TYPES))


def metric_expr(cols: dict[str, dict[str, tuple[str, str]]], metric_of: dict[str, str]) -> Expr:
    """The y of each run: its metric column, or a CASE on the run when runs' objectives differ."""
    by_metric: dict[str, list[str]] = {}
    for run_id, metric in metric_of.items():
        by_metric.setdefault(metric, []).append(run_id)
    if len(by_metric) == 1:
        return column_expr(cols, next(iter(by_metric)))
    *first, (last, _) = by_metric.items()
    cases = " ".join(f"WHEN run_id IN {sql_in(ids)} THEN CAST({_ident(m)} AS DOUBLE)" for m, ids in first)
    return Expr(f"(CASE {cases} ELSE CAST({_ident(last)} AS DOUBLE) END)", True)


def _where(x: Expr, y: Expr, run_ids: Sequence[str] | None, *more: str) -> str:
    terms = [x.finite(), y.finite(), *more]
    if run_ids is not None:
        terms.insert(0, f"run_id IN {sql_in(run_ids)}")
    return " AND ".join(terms)


def spans_sql(x: Expr, y: Expr, run_ids: Sequence[str] | None) -> str:
    """Each run's first and last x among its rows with a finite x and y."""
    return (
        f"SELECT run_id, CAST(min({x.sql}) AS DOUBLE) AS lo, CAST(max({x.sql}) AS DOUBLE) AS hi, "
        f"count(*) AS n FROM episodes WHERE {_where(x, y, run_ids)} GROUP BY run_id"
    )


def cells_sql(x: Expr, y: Expr, run_ids: Sequence[str] | None, grid: Grid) -> str:
    """Per run and grid point ``k``: the mean x and y of its rows within half a step of it."""
    if grid.dx == 0:
        k, within = "0", f"{x.sql} = {grid.lo!r}"
    else:
        last = grid.points - 1
        cell = f"CAST(floor(({x.sql} - ({grid.lo!r})) / {grid.dx!r} + 0.5) AS INTEGER)"
        k = f"least({last}, greatest(0, {cell}))"
        within = f"{x.sql} >= {grid.lo - grid.dx / 2!r} AND {x.sql} < {grid.lo + (last + 0.5) * grid.dx!r}"
    return (
        f"SELECT run_id, {k} AS k, avg({x.sql}) AS cx, avg({y.sql}) AS cy FROM episodes "
        f"WHERE {_where(x, y, run_ids, within)} GROUP BY ALL"
    )


def _cells_by_run(table: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{run_id: (centroid x, centroid y)}`` in x order."""
    if table.num_rows == 0:
        return {}
    ids = table.column("run_id").combine_chunks().dictionary_encode()
    codes = ids.indices.to_numpy(zero_copy_only=False)
    order = np.lexsort((table.column("k").to_numpy(), codes))
    codes = codes[order]
    cx = table.column("cx").to_numpy()[order]
    cy = table.column("cy").to_numpy()[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    names = ids.dictionary.to_pylist()
    return {
        names[c[0]]: (xs, ys)
        for c, xs, ys in zip(np.split(codes, cuts), np.split(cx, cuts), np.split(cy, cuts), strict=True)
    }


@dataclass
class GroupResult:
    """One group: its runs with data, its curve and band, and its runs' final scores."""

    group: Group
    metric: str
    runs: list[Run] = field(default_factory=list)  # the runs with data on this x axis
    tasks: list[str] = field(default_factory=list)
    reach: tuple[float, float] | None = None  # the common x range
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    center: np.ndarray = field(default_factory=lambda: np.zeros(0))
    low: np.ndarray = field(default_factory=lambda: np.zeros(0))
    high: np.ndarray = field(default_factory=lambda: np.zeros(0))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    reaches: list[float] = field(default_factory=list)  # each run's last x
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.group.label

    def strata(self, tasks: Sequence[str] | None = None) -> list[np.ndarray]:
        """The final scores split by task (in ``tasks`` order, default the group's own)."""
        order = list(dict.fromkeys(self.tasks)) if tasks is None else list(tasks)
        return [self.scores[[t == task for t in self.tasks]] for task in order]


@dataclass
class Comparison:
    """What :func:`compare` found; each method returns an Arrow table."""

    x_axis: str
    stat: str
    groups: list[GroupResult]
    grid: Grid | None
    reps: int = REPS
    confidence: float = rlstats.CONFIDENCE
    seed: int | None = 0

    def curves(self) -> pa.Table:
        """group, x, value (the stat), low, high (the band), n: one row per group and grid point."""
        parts = {"group": [], "x": [], "value": [], "low": [], "high": [], "n": []}
        for g in self.groups:
            parts["group"] += [g.label] * len(g.x)
            parts["n"] += [len(g.runs)] * len(g.x)
            for key, values in (("x", g.x), ("value", g.center), ("low", g.low), ("high", g.high)):
                parts[key] += values.tolist()
        schema = [pa.string(), pa.float64(), pa.float64(), pa.float64(), pa.float64(), pa.int64()]
        return pa.table({k: pa.array(v, type=t) for (k, v), t in zip(parts.items(), schema, strict=True)})

    def final(self) -> pa.Table:
        """One row per group: N, running, x_final, IQM and CI, mean, median, optimality gap and CI."""
        return pa.Table.from_pylist(
            [{"group": g.label, **g.summary} for g in self.groups], schema=FINAL_SCHEMA
        )

    def improvement(self) -> pa.Table:
        """P(X > Y) with its CI for each pair of groups with final scores and a task in common."""
        rows = []
        done = [g for g in self.groups if g.scores.size]
        for i, gx in enumerate(done):
            for gy in done[i + 1 :]:
                tasks = [t for t in dict.fromkeys(gx.tasks) if t in set(gy.tasks)]
                if not tasks:
                    continue
                x, y = gx.strata(tasks), gy.strata(tasks)
                lo, hi = rlstats.improvement_ci(x, y, self.reps, self.confidence, self.seed)
                p = rlstats.probability_of_improvement(x, y)
                rows.append({"x": gx.label, "y": gy.label, "probability": p, "low": lo, "high": hi})
        return pa.Table.from_pylist(rows, schema=IMPROVEMENT_SCHEMA)

    def run_scores(self) -> pa.Table:
        """One row per run with data: its group, task, status, last x and final score."""
        rows = [
            {
                "group": g.label,
                "run_id": r.run_id,
                "name": r.name,
                "task": g.tasks[i],
                "status": r.status,
                "x_max": g.reaches[i],
                "score": float(g.scores[i]) if g.scores.size else None,
            }
            for g in self.groups
            for i, r in enumerate(g.runs)
        ]
        return pa.Table.from_pylist(rows, schema=RUN_SCORES_SCHEMA)


FINAL_SCHEMA = pa.schema(
    [("group", pa.string()), ("n", pa.int64()), ("running", pa.int64()), ("metric", pa.string())]
    + [
        (name, pa.float64())
        for name in ("x_final", "iqm", "iqm_low", "iqm_high", "mean", "median")
        + ("optimality_gap", "gap_low", "gap_high")
    ]
)
IMPROVEMENT_SCHEMA = pa.schema(
    [("x", pa.string()), ("y", pa.string())] + [(n, pa.float64()) for n in ("probability", "low", "high")]
)
RUN_SCORES_SCHEMA = pa.schema(
    [(n, pa.string()) for n in ("group", "run_id", "name", "task", "status")]
    + [("x_max", pa.float64()), ("score", pa.float64())]
)


def _summary(
    res: GroupResult, gamma: float, reps: int, confidence: float, seed: int | None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "n": len(res.runs),
        "running": sum(r.live for r in res.group.runs),
        "metric": res.metric,
        "x_final": res.reach[1] if res.reach else None,
    }
    if not res.scores.size:
        return out
    strata = res.strata()
    out["iqm"] = rlstats.iqm(strata)
    out["iqm_low"], out["iqm_high"] = rlstats.bootstrap_ci(strata, rlstats.iqm_rows, reps, confidence, seed)
    out["mean"], out["median"] = float(res.scores.mean()), float(np.median(res.scores))
    out["optimality_gap"] = rlstats.optimality_gap(strata, gamma)
    gap = rlstats.gap_rows(gamma)
    out["gap_low"], out["gap_high"] = rlstats.bootstrap_ci(strata, gap, reps, confidence, seed)
    return out


def compare(
    source: Any,
    *,
    group_by: str | Sequence[str] | None = None,
    task: str | None = None,
    x: str = "episode",
    metric: str | None = None,
    stat: str = "iqm",
    run_ids: Sequence[str] | None = None,
    experiments: Sequence[str] | None = None,
    points: int = DEFAULT_POINTS,
    final_window: float = FINAL_WINDOW,
    gamma: float = 1.0,
    reps: int = REPS,
    band_reps: int = BAND_REPS,
    confidence: float = rlstats.CONFIDENCE,
    seed: int | None = 0,
) -> Comparison:
    """Group runs and aggregate them (see the module docstring).

    Args:
        source: anything with ``.query(sql)`` or ``.sql(sql)`` answering with Arrow.
        group_by: ``None`` (every hyperparameter but the seed), ``"tag"``, or keys
            (``"lr,gamma"`` or a list).
        task: a hyperparameter whose values are tasks: the strata of the bootstrap.
        x: ``"episode"`` or ``"env_step"``.
        metric: a numeric ``episodes`` column; default each run's objective
            (``runs.objective`` where that column exists), else ``profit``.
        stat: the curve's statistic across runs: ``"iqm"``, ``"mean"`` or ``"median"``.
        run_ids, experiments: only these runs / experiments (default every run not
            archived or deleted).
        points: grid points (fewer when the common range has fewer whole steps).
        final_window: the share of each group's common range its final scores average over.
        gamma: the optimality gap's threshold (rliable's default 1 suits normalised scores).
        reps, band_reps: bootstrap replications for final scores and for the curves' bands.
        confidence: the intervals' coverage.
        seed: seeds ``numpy.random.RandomState`` for every bootstrap (same data, same bands).
    """
    if x not in X_AXES:
        raise ValueError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    if stat not in STATS:
        raise ValueError(f"stat must be one of {', '.join(STATS)}, not {stat!r}")
    if points < 1 or reps < 1 or band_reps < 1 or not 0 <= final_window <= 1 or not 0 < confidence < 1:
        raise ValueError(
            "points, reps and band_reps must be positive, final_window in [0, 1], confidence in (0, 1)"
        )
    cols = columns(source)
    x_col = metric_column(cols, x, "the x axis")
    runs = load_runs(source, cols, run_ids, experiments)
    metric_of = {
        r.run_id: metric_column(cols, metric or r.objective or DEFAULT_METRIC, "a metric") for r in runs
    }
    groups = group_runs(runs, group_by, task)
    results = [GroupResult(g, "/".join(sorted({metric_of[r.run_id] for r in g.runs}))) for g in groups]
    if not runs:
        return Comparison(x, stat, results, None, reps, confidence, seed)
    xe, ye = column_expr(cols, x_col), metric_expr(cols, metric_of)
    subset = None if run_ids is None and experiments is None else list(metric_of)
    spans = {r["run_id"]: (r["lo"], r["hi"]) for r in fetch(source, spans_sql(xe, ye, subset)).to_pylist()}
    for res in results:
        have = [i for i, r in enumerate(res.group.runs) if r.run_id in spans]
        res.runs = [res.group.runs[i] for i in have]
        res.tasks = [res.group.tasks[i] for i in have]
        res.reaches = [spans[r.run_id][1] for r in res.runs]
        if have:
            lo, hi = max(spans[r.run_id][0] for r in res.runs), min(res.reaches)
            res.reach = (lo, hi) if lo <= hi else None
    shown = [res for res in results if res.reach]
    grid = common_grid([res.reach for res in shown if res.reach], points)
    if grid is not None:
        ids = [r.run_id for res in shown for r in res.runs]
        cells = _cells_by_run(
            fetch(
                source,
                cells_sql(xe, ye, None if subset is None and len(ids) == len(spans) else ids, grid),
            )
        )
        for res in shown:
            _aggregate(res, grid, cells, stat, final_window, band_reps, confidence, seed)
    for res in results:
        res.summary = _summary(res, gamma, reps, confidence, seed)
    return Comparison(x, stat, results, grid, reps, confidence, seed)


def _aggregate(
    res: GroupResult,
    grid: Grid,
    cells: dict[str, tuple[np.ndarray, np.ndarray]],
    stat: str,
    final_window: float,
    band_reps: int,
    confidence: float,
    seed: int | None,
) -> None:
    assert res.reach is not None
    lo, hi = res.reach
    res.x = grid.x(grid.within(lo, hi))
    curves = [cells[r.run_id] for r in res.runs]
    sizes = [len(list(g)) for g in _runs_of(res.tasks)]
    if len(res.x):
        values = np.vstack([np.interp(res.x, cx, cy) for cx, cy in curves])
        res.center, res.low, res.high = rlstats.curve_band(values, sizes, stat, band_reps, confidence, seed)
    start = hi - final_window * (hi - lo)
    tail = np.unique(np.append(res.x[res.x >= start], hi))
    res.scores = np.array([np.interp(tail, cx, cy).mean() for cx, cy in curves])


def _runs_of(tasks: Sequence[str]) -> list[list[str]]:
    """Consecutive equal tasks (the group's runs are sorted by task)."""
    out: list[list[str]] = []
    for t in tasks:
        if out and out[-1][0] == t:
            out[-1].append(t)
        else:
            out.append([t])
    return out


def group_curves(source: Any, **options: Any) -> pa.Table:
    """Each group's curve and bootstrap band on the common grid (see :func:`compare`)."""
    return compare(source, **options).curves()


def final_scores(source: Any, **options: Any) -> pa.Table:
    """Each group's final performance: N, IQM and CI, mean, median, optimality gap and CI."""
    return compare(source, **options).final()

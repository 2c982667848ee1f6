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

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from traindash import rlstats
from traindash.curves import (
    Curve,
    Grid,
    add_edges,
    cells_sql,
    column_expr,
    common_grid,
    curves_by_run,
    edges_sql,
    metric_expr,
    needs_edges,
    spans_sql,
)
from traindash.groups import Group, Run, columns, fetch, group_runs, load_runs, metric_column

X_AXES = ("episode", "env_step")
DEFAULT_METRIC = "profit"
STATS = tuple(rlstats.ROW_STATISTICS)
DEFAULT_POINTS = 1000
FINAL_WINDOW = 0.1
REPS = 2000  # final scores: runs x replications, cheap
BAND_REPS = 200  # curves: replications x runs x grid points, kept to well under a second


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
        parts: dict[str, list[Any]] = {k: [] for k in ("group", "x", "value", "low", "high", "n")}
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
        only = None if subset is None and len(ids) == len(spans) else ids
        curves = curves_by_run(fetch(source, cells_sql(xe, ye, only, grid)))
        ends = {r.run_id: res.reach for res in shown if res.reach for r in res.runs}
        before, after = needs_edges(curves, spans, ends)
        if before or after:
            add_edges(curves, fetch(source, edges_sql(xe, ye, before, after)))
        for res in shown:
            _aggregate(
                res,
                grid,
                [curves[r.run_id] for r in res.runs],
                stat,
                final_window,
                band_reps,
                confidence,
                seed,
            )
    for res in results:
        res.summary = _summary(res, gamma, reps, confidence, seed)
    return Comparison(x, stat, results, grid, reps, confidence, seed)


def _aggregate(
    res: GroupResult,
    grid: Grid,
    curves: list[Curve],
    stat: str,
    final_window: float,
    band_reps: int,
    confidence: float,
    seed: int | None,
) -> None:
    """The group's grid points, its curve and band, and its runs' final scores: each the mean
    of the run's curve over the grid points in the last ``final_window`` of the common range
    and at its end."""
    assert res.reach is not None
    lo, hi = res.reach
    res.x = grid.x(grid.within(lo, hi))
    if len(res.x):
        sizes = [len(list(g)) for _, g in itertools.groupby(res.tasks)]  # runs are sorted by task
        values = np.vstack([np.interp(res.x, cx, cy) for cx, cy in curves])
        res.center, res.low, res.high = rlstats.curve_band(values, sizes, stat, band_reps, confidence, seed)
    start = hi - final_window * (hi - lo)
    tail = np.unique(np.append(res.x[res.x >= start], hi))
    res.scores = np.array([np.interp(tail, cx, cy).mean() for cx, cy in curves])


def ci_text(value: float | None, low: float | None, high: float | None, digits: int = 4) -> str:
    """``"1.36 [1.35, 1.37]"``: an estimate and its interval as a person reads them."""
    if value is None:
        return ""
    if low is None or high is None:
        return f"{value:.{digits}g}"
    return f"{value:.{digits}g} [{low:.{digits}g}, {high:.{digits}g}]"


def group_curves(source: Any, **options: Any) -> pa.Table:
    """Each group's curve and bootstrap band on the common grid (see :func:`compare`)."""
    return compare(source, **options).curves()


def final_scores(source: Any, **options: Any) -> pa.Table:
    """Each group's final performance: N, IQM and CI, mean, median, optimality gap and CI."""
    return compare(source, **options).final()

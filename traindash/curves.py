"""Runs' curves on a common x grid, reduced in DuckDB (issue 17).

A run's value at a grid point is the linear interpolation, at that point, of its *cell
centroids*: a cell is the run's rows within half a grid step of a grid point, its centroid
their mean x and mean y. A run with fewer points than the grid has one point per cell, so
this is exact linear interpolation of its points; a denser run is averaged over one grid step
(the curve a person reads). Three statements, all over ``episodes``:

1. :func:`spans_sql`: each run's first and last x (rows with a finite x and y only);
2. :func:`cells_sql`: per run and cell (grid points ``-1 .. points``, one beyond each end),
   the mean x and y: at most a few rows per run and grid point leave the database;
3. :func:`edges_sql`, only for runs whose cells do not reach a group's end: the run's raw
   point just before (after) it, so even a sparse run is interpolated there, not held flat.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from traindash.groups import sql_in
from traindash.query import sql_literal

FLOAT_TYPES = ("DOUBLE", "FLOAT", "REAL")
INTEGER_TYPES = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT")
Columns = dict[str, dict[str, tuple[str, str]]]
Curve = tuple[np.ndarray, np.ndarray]  # centroid x (ascending) and y


def ident(name: str) -> str:
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


def double(value: float) -> str:
    """A DOUBLE literal: DuckDB reads ``100.5`` as a DECIMAL, and DECIMAL arithmetic over
    millions of rows is several times slower."""
    return f"CAST({value!r} AS DOUBLE)"


@dataclass(frozen=True)
class Expr:
    """An ``episodes`` expression: whether it can hold NaN or infinity, or only whole numbers."""

    sql: str
    floating: bool
    integral: bool = False

    def finite(self) -> str:
        return f"isfinite({self.sql})" if self.floating else f"{self.sql} IS NOT NULL"

    def between(self, lo: float, hi: float) -> str:
        """``lo < x < hi``; with whole-number bounds for an integer column (no cast per row)."""
        if self.integral:
            return f"{self.sql} BETWEEN {math.floor(lo) + 1} AND {math.ceil(hi) - 1}"
        return f"{self.sql} > {double(lo)} AND {self.sql} < {double(hi)}"


def column_expr(cols: Columns, name: str) -> Expr:
    kind = cols["episodes"][name.lower()][1].upper()
    integral = kind.startswith(INTEGER_TYPES) or kind.startswith(tuple("U" + t for t in INTEGER_TYPES))
    return Expr(ident(name), kind.startswith(FLOAT_TYPES), integral)


def metric_expr(cols: Columns, metric_of: dict[str, str]) -> Expr:
    """The y of each run: its metric column, or a CASE on the run when runs' objectives differ."""
    by_metric: dict[str, list[str]] = {}
    for run_id, metric in metric_of.items():
        by_metric.setdefault(metric, []).append(run_id)
    if len(by_metric) == 1:
        return column_expr(cols, next(iter(by_metric)))
    *first, (last, _) = by_metric.items()
    cases = " ".join(f"WHEN run_id IN {sql_in(ids)} THEN CAST({ident(m)} AS DOUBLE)" for m, ids in first)
    return Expr(f"(CASE {cases} ELSE CAST({ident(last)} AS DOUBLE) END)", True)


def _where(x: Expr, y: Expr, run_ids: Sequence[str] | None, *more: str) -> str:
    terms = [x.finite(), y.finite(), *more]
    if run_ids is not None:
        terms.insert(0, f"run_id IN {sql_in(run_ids)}")
    return " AND ".join(terms)


def spans_sql(x: Expr, y: Expr, run_ids: Sequence[str] | None) -> str:
    """Each run's first and last x among its rows with a finite x and y."""
    return (
        f"SELECT run_id, CAST(min({x.sql}) AS DOUBLE) AS lo, CAST(max({x.sql}) AS DOUBLE) AS hi "
        f"FROM episodes WHERE {_where(x, y, run_ids)} GROUP BY run_id"
    )


def cells_sql(x: Expr, y: Expr, run_ids: Sequence[str] | None, grid: Grid) -> str:
    """Per run and cell ``k`` (``-1 .. points``): the mean x and y of its rows in the cell."""
    if grid.dx == 0:
        k, within = "0", f"{x.sql} = {double(grid.lo)}"
    else:
        # the cast rounds to the nearest cell; the bounds keep k in -1 .. points (a rounding
        # slip at a bound would only add a real centroid beyond, still in x order)
        k = f"CAST(({x.sql} - {double(grid.lo)}) * {double(1 / grid.dx)} AS INTEGER)"
        within = x.between(grid.lo - 1.5 * grid.dx, grid.lo + (grid.points + 0.5) * grid.dx)
    return (
        f"SELECT run_id, {k} AS k, CAST(avg({x.sql}) AS DOUBLE) AS cx, CAST(avg({y.sql}) AS DOUBLE) AS cy "
        f"FROM episodes WHERE {_where(x, y, run_ids, within)} GROUP BY ALL"
    )


def edges_sql(x: Expr, y: Expr, before: dict[str, float], after: dict[str, float]) -> str:
    """The raw point of each run in ``before`` just before its bound, and of each run in
    ``after`` just after its bound (columns run_id, cx, cy)."""
    parts = []
    for bounds, agg, pick, op in ((before, "max", "arg_max", "<"), (after, "min", "arg_min", ">")):
        if bounds:
            near = " OR ".join(
                f"(run_id = {sql_literal(r)} AND {x.sql} {op} {double(b)})" for r, b in bounds.items()
            )
            parts.append(
                f"SELECT run_id, CAST({agg}({x.sql}) AS DOUBLE) AS cx, "
                f"CAST({pick}({y.sql}, {x.sql}) AS DOUBLE) AS cy "
                f"FROM episodes WHERE {_where(x, y, None, f'({near})')} GROUP BY run_id"
            )
    return " UNION ALL ".join(parts)


def curves_by_run(table: pa.Table) -> dict[str, Curve]:
    """``{run_id: (centroid x, centroid y)}`` in cell order from a :func:`cells_sql` result."""
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


def needs_edges(
    curves: dict[str, Curve], spans: dict[str, tuple[float, float]], ends: dict[str, tuple[float, float]]
) -> tuple[dict[str, float], dict[str, float]]:
    """Runs with no centroid at or beyond an end of the x range they must cover (``ends``)
    while they have rows beyond it: their raw point there is needed to interpolate."""
    before, after = {}, {}
    for run_id, (lo, hi) in ends.items():
        cx = curves.get(run_id, _EMPTY)[0]
        if (not len(cx) or cx[0] > lo) and spans[run_id][0] < lo:
            before[run_id] = lo
        if (not len(cx) or cx[-1] < hi) and spans[run_id][1] > hi:
            after[run_id] = hi
    return before, after


def add_edges(curves: dict[str, Curve], table: pa.Table) -> None:
    """Add the points of an :func:`edges_sql` result to their runs' curves, in x order."""
    for row in table.to_pylist():
        cx, cy = curves.get(row["run_id"], _EMPTY)
        cx, cy = np.append(cx, row["cx"]), np.append(cy, row["cy"])
        order = np.argsort(cx, kind="stable")
        curves[row["run_id"]] = (cx[order], cy[order])


_EMPTY: Curve = (np.zeros(0), np.zeros(0))

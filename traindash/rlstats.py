"""Statistics for comparing groups of runs across seeds, as rliable defines them.

rliable (Agarwal et al., "Deep RL at the Edge of the Statistical Precipice", NeurIPS 2021)
reports the interquartile mean with stratified bootstrap confidence intervals, the optimality
gap and the probability of improvement. The definitions here are rliable's, computed with
numpy alone and vectorised over the bootstrap replications:

* scores come as *strata*: one 1-D array of run scores per task (one stratum when a group has
  a single task). rliable's ``(num_runs, num_tasks)`` matrix is the equal-size case;
* IQM: the 25 % trimmed mean of every score (``scipy.stats.trim_mean(x, 0.25)``: drop
  ``int(0.25 n)`` scores at each end of the sorted scores, average the rest);
* optimality gap: ``gamma - mean(min(scores, gamma))``;
* probability of improvement ``P(X > Y)``: per task, the Mann-Whitney U statistic of X over Y
  divided by ``n_x n_y`` (ties count one half), averaged over the tasks both have;
* stratified bootstrap: each replication resamples runs with replacement within each task;
  the interval is the percentile interval (``numpy.percentile``, linear).

Random draws follow rliable's order (``randint(0, n, (n, tasks))`` per replication, X before
Y for the probability of improvement) from ``numpy.random.RandomState(seed)``, so the same
seed gives the same intervals as rliable after ``numpy.random.seed(seed)`` whenever every
stratum has the same number of runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
TRIM = 0.25

Strata = Sequence[np.ndarray]
RowStatistic = Callable[[np.ndarray], np.ndarray]


def _flat(strata: Strata) -> np.ndarray:
    return np.concatenate([np.asarray(s, dtype=float).ravel() for s in strata])


def _cuts(n: int) -> tuple[int, int]:
    low = int(TRIM * n)
    return low, n - low


def iqm(scores: np.ndarray | Strata) -> float:
    """Interquartile mean of all scores (rliable's ``aggregate_iqm``)."""
    values = _flat(scores) if isinstance(scores, (list, tuple)) else np.asarray(scores, float).ravel()
    return float(iqm_rows(values[None, :])[0])


def iqm_rows(values: np.ndarray) -> np.ndarray:
    """IQM of each row of a 2-D array (each row one bootstrap replication or grid point)."""
    n = values.shape[-1]
    low, high = _cuts(n)
    if low == 0:
        return values.mean(axis=-1)
    if low == 1:  # 4 to 7 runs (5 seeds is common): drop the smallest and largest, no sort
        return (values.sum(axis=-1) - values.min(axis=-1) - values.max(axis=-1)) / (n - 2)
    ordered = np.sort(values, axis=-1)
    return ordered[..., low:high].mean(axis=-1)


def mean_rows(values: np.ndarray) -> np.ndarray:
    return values.mean(axis=-1)


def median_rows(values: np.ndarray) -> np.ndarray:
    return np.median(values, axis=-1)


# name -> statistic of the last axis (the runs), for curves and the final table
ROW_STATISTICS: dict[str, RowStatistic] = {"iqm": iqm_rows, "mean": mean_rows, "median": median_rows}


def optimality_gap(scores: np.ndarray | Strata, gamma: float = 1.0) -> float:
    """How far scores fall short of ``gamma`` (rliable's ``aggregate_optimality_gap``)."""
    values = _flat(scores) if isinstance(scores, (list, tuple)) else np.asarray(scores, float).ravel()
    return float(gamma - np.minimum(values, gamma).mean())


def gap_rows(gamma: float) -> RowStatistic:
    return lambda values: gamma - np.minimum(values, gamma).mean(axis=-1)


def _wins(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``w[a, b]``: 1 when x[a] > y[b], one half on a tie, else 0 (the Mann-Whitney kernel)."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def probability_of_improvement(x: Strata, y: Strata) -> float:
    """``P(X > Y)`` averaged over tasks (rliable's ``probability_of_improvement``).

    ``x`` and ``y`` hold one array of run scores per task, in the same task order.
    """
    if len(x) != len(y) or not x:
        raise ValueError("x and y need the same tasks, at least one")
    per_task = []
    for xs, ys in zip(x, y, strict=True):
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        if np.array_equal(xs, ys):
            per_task.append(0.5)
        else:
            per_task.append(float(_wins(xs, ys).mean()))
    return float(np.mean(per_task))


def _rectangular(sizes: Sequence[int]) -> bool:
    return len(set(sizes)) == 1


def resample_indices(sizes: Sequence[int], reps: int, rs: np.random.RandomState) -> np.ndarray:
    """``(reps, sum(sizes))`` indices into the strata laid end to end, each stratum resampled
    with replacement from itself (rliable's stratified bootstrap, without task resampling)."""
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    if _rectangular(sizes):
        n, tasks = sizes[0], len(sizes)
        draws = rs.randint(0, n, size=(reps, n, tasks))  # rliable's draw: (runs, tasks) per rep
        return (draws + offsets[None, None, :]).transpose(0, 2, 1).reshape(reps, n * tasks)
    return np.concatenate(
        [rs.randint(0, n, size=(reps, n)) + off for n, off in zip(sizes, offsets, strict=True)], axis=1
    )


def percentile_interval(
    replicates: np.ndarray, confidence: float = CONFIDENCE, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of bootstrap replicates along ``axis``: ``numpy.percentile``'s
    linear method, computed from one sort (faster than its partition for many intervals)."""
    alpha = (1.0 - confidence) / 2
    ordered = np.sort(replicates, axis=axis)
    n = ordered.shape[axis]
    bounds = []
    for percent in (100 * alpha, 100 * (1 - alpha)):
        # numpy's virtual index and _lerp, so the bounds are numpy.percentile's to the last bit
        virtual = (n - 1) * (percent / 100)
        i = min(math.floor(virtual), n - 1)
        t = virtual - i
        a, b = np.take(ordered, i, axis=axis), np.take(ordered, min(i + 1, n - 1), axis=axis)
        bounds.append(np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t))
    return bounds[0], bounds[1]


def bootstrap_ci(
    strata: Strata,
    statistic: RowStatistic,
    reps: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int | None = 0,
) -> tuple[float, float]:
    """Stratified bootstrap percentile interval of ``statistic`` (vectorised over rows)."""
    values = _flat(strata)
    sizes = [len(np.asarray(s).ravel()) for s in strata]
    idx = resample_indices(sizes, reps, np.random.RandomState(seed))
    lo, hi = percentile_interval(statistic(values[idx]), confidence)
    return float(lo), float(hi)


def improvement_ci(
    x: Strata, y: Strata, reps: int = 2000, confidence: float = CONFIDENCE, seed: int | None = 0
) -> tuple[float, float]:
    """Percentile interval of ``P(X > Y)``, X and Y resampled independently within each task."""
    xs = [np.asarray(s, float).ravel() for s in x]
    ys = [np.asarray(s, float).ravel() for s in y]
    if len(xs) != len(ys) or not xs:
        raise ValueError("x and y need the same tasks, at least one")
    rs = np.random.RandomState(seed)
    nx, ny = [len(s) for s in xs], [len(s) for s in ys]
    wins = [_wins(a, b) for a, b in zip(xs, ys, strict=True)]
    # counts[t][r, i]: how often run i of task t is drawn in replication r
    cx = [np.zeros((reps, n)) for n in nx]
    cy = [np.zeros((reps, n)) for n in ny]
    for r in range(reps):
        for counts, sizes in ((cx, nx), (cy, ny)):
            if _rectangular(sizes):
                draw = rs.randint(0, sizes[0], size=(sizes[0], len(sizes)))
                for t in range(len(sizes)):
                    counts[t][r] = np.bincount(draw[:, t], minlength=sizes[0])
            else:
                for t, n in enumerate(sizes):
                    counts[t][r] = np.bincount(rs.randint(0, n, size=n), minlength=n)
    per_task = [np.einsum("ri,ij,rj->r", cx[t], wins[t], cy[t]) / (nx[t] * ny[t]) for t in range(len(xs))]
    lo, hi = percentile_interval(np.mean(per_task, axis=0), confidence)
    return float(lo), float(hi)


def curve_band(
    values: np.ndarray,
    sizes: Sequence[int],
    stat: str = "iqm",
    reps: int = 200,
    confidence: float = CONFIDENCE,
    seed: int | None = 0,
    chunk_cells: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``stat`` across runs at each grid point and its bootstrap band.

    ``values`` is ``(runs, points)``, the runs of each stratum together in ``sizes`` order.
    One draw of runs per replication serves every point, so the band is smooth; at each point
    the band is the interval rliable gives for the runs' values there (same seed and reps).
    Returns ``(center, low, high)``, each ``(points,)``.
    """
    if stat not in ROW_STATISTICS:
        raise ValueError(f"stat must be one of {', '.join(ROW_STATISTICS)}, not {stat!r}")
    runs = values.shape[0]
    by_point = np.ascontiguousarray(values.T)  # (points, runs): the statistic runs along rows
    center = ROW_STATISTICS[stat](by_point)
    idx = resample_indices(sizes, reps, np.random.RandomState(seed))
    low, high = _cuts(runs)
    replicates = np.empty((by_point.shape[0], reps))  # (points, reps): for the percentiles' sort
    if stat == "mean" or (stat == "iqm" and low == 0):
        counts = np.zeros((reps, runs))
        np.add.at(counts, (np.arange(reps)[:, None], idx), 1.0)
        replicates[:] = (counts @ values).T / runs
        return center, *percentile_interval(replicates, confidence, axis=1)
    step = max(1, chunk_cells // max(1, values.size))
    for start in range(0, reps, step):
        chunk = idx[start : start + step]
        if stat == "iqm" and low == 1:
            # 4 to 7 runs: drop each point's smallest and largest; reducing over the outer
            # axis of (runs, reps, points) is elementwise work, where a sort of 5 is not
            block = values[chunk.T]
            kept = block.sum(axis=0) - block.min(axis=0) - block.max(axis=0)
            replicates[:, start : start + step] = kept.T / (runs - 2)
            continue
        block = by_point[:, chunk]  # (points, block reps, runs): a copy
        block.sort(axis=-1)  # in place, and faster here than numpy's partition
        if stat == "iqm":
            replicates[:, start : start + step] = block[..., low:high].mean(axis=-1)
        else:  # the median
            middle = block[..., (runs - 1) // 2 : runs // 2 + 1]
            replicates[:, start : start + step] = middle.mean(axis=-1)
    lo, hi = percentile_interval(replicates, confidence, axis=1)
    return center, lo, hi

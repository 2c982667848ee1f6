"""traindash.rlstats against rliable itself, on the same scores, seeds and replications."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
from rliable import library as rly
from rliable import metrics

from traindash import rlstats

REPS = 500


def _strata(scores: np.ndarray) -> list[np.ndarray]:
    """rliable's (runs, tasks) matrix as traindash's strata: one array of runs per task."""
    return [scores[:, t] for t in range(scores.shape[1])]


def _rliable_ci(scores: object, func: object, seed: int, reps: int = REPS) -> tuple[float, np.ndarray]:
    np.random.seed(seed)  # rliable's bootstrap draws from numpy's global generator
    point, interval = rly.get_interval_estimates({"k": scores}, func, reps=reps)
    return point["k"], interval["k"].ravel()


SHAPES = [(5, 1), (10, 1), (7, 3), (12, 4), (3, 2), (40, 1)]


@pytest.fixture(params=SHAPES, ids=[f"{r}runs-{t}tasks" for r, t in SHAPES])
def scores(request: pytest.FixtureRequest) -> np.ndarray:
    runs, tasks = request.param
    rs = np.random.RandomState(runs * 100 + tasks)
    return rs.gamma(2.0, 0.4, size=(runs, tasks))


def test_iqm_and_its_ci_agree_with_rliable(scores: np.ndarray) -> None:
    point, interval = _rliable_ci(scores, lambda s: np.array([metrics.aggregate_iqm(s)]), seed=11)
    strata = _strata(scores)
    assert rlstats.iqm(strata) == pytest.approx(float(point[0]), rel=1e-12)
    assert rlstats.iqm(scores) == pytest.approx(scipy.stats.trim_mean(scores, 0.25, axis=None), rel=1e-12)
    lo, hi = rlstats.bootstrap_ci(strata, rlstats.iqm_rows, reps=REPS, seed=11)
    assert (lo, hi) == pytest.approx(tuple(interval), rel=1e-9, abs=1e-12)
    assert lo <= rlstats.iqm(strata) <= hi


def test_optimality_gap_and_its_ci_agree_with_rliable(scores: np.ndarray) -> None:
    gamma = float(np.median(scores))  # some scores above the threshold, some below
    func = lambda s: np.array([metrics.aggregate_optimality_gap(s, gamma)])  # noqa: E731
    point, interval = _rliable_ci(scores, func, seed=5)
    strata = _strata(scores)
    assert rlstats.optimality_gap(strata, gamma) == pytest.approx(float(point[0]), rel=1e-12)
    lo, hi = rlstats.bootstrap_ci(strata, rlstats.gap_rows(gamma), reps=REPS, seed=5)
    assert (lo, hi) == pytest.approx(tuple(interval), rel=1e-9, abs=1e-12)
    assert rlstats.optimality_gap(strata) == pytest.approx(metrics.aggregate_optimality_gap(scores))


@pytest.mark.parametrize("runs_y", [None, 4])
def test_probability_of_improvement_and_its_ci_agree_with_rliable(
    scores: np.ndarray, runs_y: int | None
) -> None:
    rs = np.random.RandomState(3)
    other = rs.gamma(2.0, 0.45, size=(runs_y or scores.shape[0], scores.shape[1]))
    other[0, 0] = scores[0, 0]  # a tie counts one half
    expected = metrics.probability_of_improvement(scores, other)
    assert rlstats.probability_of_improvement(_strata(scores), _strata(other)) == pytest.approx(
        expected, rel=1e-12
    )
    np.random.seed(23)
    _, interval = rly.get_interval_estimates(
        {"x,y": [scores, other]}, metrics.probability_of_improvement, reps=REPS
    )
    lo, hi = rlstats.improvement_ci(_strata(scores), _strata(other), reps=REPS, seed=23)
    assert (lo, hi) == pytest.approx(tuple(interval["x,y"].ravel()), rel=1e-9, abs=1e-12)


def test_identical_groups_improve_with_probability_one_half() -> None:
    x = [np.array([1.0, 2.0, 3.0])]
    assert rlstats.probability_of_improvement(x, x) == 0.5
    assert rlstats.probability_of_improvement([np.array([2.0, 3.0])], [np.array([0.0, 1.0])]) == 1.0


@pytest.mark.parametrize("n", range(1, 16))
def test_iqm_rows_is_scipys_trimmed_mean_for_every_run_count(n: int) -> None:
    values = np.random.RandomState(n).normal(size=(50, n))
    expected = scipy.stats.trim_mean(values, 0.25, axis=1)
    np.testing.assert_allclose(rlstats.iqm_rows(values), expected, rtol=1e-12, atol=1e-12)


def test_unequal_strata_resample_within_each_task() -> None:
    sizes = [3, 5, 2]
    idx = rlstats.resample_indices(sizes, 400, np.random.RandomState(0))
    assert idx.shape == (400, 10)
    assert set(np.unique(idx[:, :3])) == {0, 1, 2}
    assert set(np.unique(idx[:, 3:8])) == {3, 4, 5, 6, 7}
    assert set(np.unique(idx[:, 8:])) == {8, 9}


@pytest.mark.parametrize("runs", [2, 3, 5, 8, 9])  # each of the band's code paths
@pytest.mark.parametrize("stat", ["iqm", "mean", "median"])
def test_curve_band_at_each_point_is_rliables_interval_of_that_point(stat: str, runs: int) -> None:
    """One draw of runs serves every grid point (a smooth band), so at each point the band is
    exactly the interval rliable gives for the runs' values there, with the same seed."""
    values = np.random.RandomState(runs).normal(size=(runs, 30)).cumsum(axis=1)  # 30 points
    center, lo, hi = rlstats.curve_band(values, [runs], stat, reps=300, seed=4)
    func = {"iqm": metrics.aggregate_iqm, "mean": np.mean, "median": np.median}[stat]
    for point in (0, 7, 29):
        at = values[:, [point]]
        estimate, interval = _rliable_ci(at, lambda s: np.array([func(s)]), seed=4, reps=300)  # noqa: B023
        assert center[point] == pytest.approx(float(estimate[0]), rel=1e-12)
        assert (lo[point], hi[point]) == pytest.approx(tuple(interval), rel=1e-9, abs=1e-12)
    assert (lo <= center + 1e-12).all() and (center <= hi + 1e-12).all()


@pytest.mark.parametrize("confidence", [0.95, 0.9, 0.5, 0.999])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 200, 2001])
def test_percentile_interval_is_numpys_percentile_to_the_bit(confidence: float, n: int) -> None:
    replicates = np.random.RandomState(n).normal(size=(4, n))
    alpha = (1 - confidence) / 2
    expected = np.percentile(replicates, [100 * alpha, 100 * (1 - alpha)], axis=1)
    for axis, data in ((1, replicates), (0, replicates.T)):
        lo, hi = rlstats.percentile_interval(data, confidence, axis=axis)
        assert np.array_equal(lo, expected[0]) and np.array_equal(hi, expected[1])

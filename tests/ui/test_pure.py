"""The pure parts of the ui: rolling means, downsampling SQL, KPI rules, figure builders."""

from __future__ import annotations

import math

import duckdb
import numpy as np
import pytest

from traindash.collector.tables import CORE_COLUMNS, EPISODES, MODEL_METRICS
from traindash.ui import history
from traindash.ui.figures import PLOTS, RunSources, fit_range, live_figures, robust_range
from traindash.ui.fleet import fleet_html
from traindash.ui.kpi import KpiState, best_episode_level, cards, profit_level, sharpe_level, status_level
from traindash.ui.render import cards_html
from traindash.ui.series import EPISODE_COLUMNS, EPISODE_ROLLING, Roller, episode_rows, rolling_mean
from traindash.ui.themes import get_theme


def _db(n: int, nan_at: int | None = None, spike_at: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for table in (EPISODES, MODEL_METRICS):
        cols = ", ".join(f"{c} {t}" for c, t in CORE_COLUMNS[table].items())
        con.execute(f"CREATE TABLE {table} ({cols})")
    profit = "sin(i / 500.0) * 10 + (i % 7) * 0.1"
    if spike_at is not None:
        profit = f"CASE WHEN i = {spike_at} THEN 1e6 ELSE {profit} END"
    if nan_at is not None:
        profit = f"CASE WHEN i = {nan_at} THEN 'nan'::DOUBLE ELSE {profit} END"
    con.execute(f"""INSERT INTO episodes (run_id, seq, ts, episode, profit, sharpe, win_rate, drawdown,
        num_trades, epsilon, learning_rate)
        SELECT 'r', i, to_timestamp(1.7e9 + i)::TIMESTAMP, i, {profit}, (i % 13) / 10.0, 0.5, i % 100,
               3, 0.99, 0.001 FROM range(1, {n + 1}) t(i)""")
    return con


def _fetch(
    con: duckdb.DuckDBPyConnection, max_points: int, lo: float | None = None, hi: float | None = None
) -> dict[str, np.ndarray]:
    series = history.EPISODES
    rows = con.sql(history.count_sql(series, "r", lo, hi)).fetchall()[0][0]
    sql = history.series_sql(series, "r", rows, max_points, lo, hi)
    return history.columns_of(con.sql(sql).to_arrow_table(), EPISODE_COLUMNS)


def test_rolling_mean_matches_sql_window_and_continues_from_a_tail() -> None:
    values = np.arange(1.0, 11.0)
    full = rolling_mean(values, 3)
    assert full[:3].tolist() == [1.0, 1.5, 2.0]
    assert full[-1] == pytest.approx(9.0)
    # Streaming the second half from the first half's tail gives the same numbers.
    assert rolling_mean(values[5:], 3, values[:5]).tolist() == full[5:].tolist()


def test_rolling_mean_nan_spoils_only_its_windows() -> None:
    out = rolling_mean(np.array([1.0, np.nan, 3.0, 4.0, 5.0, 6.0]), 2)
    assert math.isnan(out[1]) and math.isnan(out[2])
    assert out[3:].tolist() == [3.5, 4.5, 5.5]


def test_small_runs_are_not_downsampled_and_smoothing_matches_streaming() -> None:
    con = _db(300)
    got = _fetch(con, 4000)
    assert got["seq"].tolist() == list(range(1, 301))
    roller = Roller(EPISODE_ROLLING)
    raw = con.sql(
        "SELECT seq, epoch_us(ts) / 1e6 AS ts, episode, profit, sharpe, win_rate, drawdown, "
        "epsilon, learning_rate FROM episodes ORDER BY seq"
    ).fetchnumpy()
    roller.seed({k: raw[k][:200].tolist() for k in ("profit", "sharpe", "win_rate")})
    streamed = episode_rows({k: raw[k][200:] for k in raw}, roller)
    for col in ("profit_smooth", "sharpe_smooth", "win_rate_pct"):
        np.testing.assert_allclose(streamed[col], got[col][200:])


def test_long_runs_are_downsampled_keeping_ends_extremes_and_nans() -> None:
    n = 200_000
    con = _db(n, nan_at=123_457, spike_at=77_777)
    got = _fetch(con, 3000)
    assert 500 < len(got["seq"]) <= 3000
    assert got["seq"][0] == 1 and got["seq"][-1] == n
    assert np.all(np.diff(got["seq"]) > 0)
    assert 123_457 in got["seq"]  # the NaN row
    assert np.nanmax(got["profit"]) == 1e6  # the spike
    full = con.sql("SELECT min(profit) FILTER (WHERE isfinite(profit)) FROM episodes").fetchall()[0][0]
    assert np.nanmin(got["profit"]) == full


def test_zoomed_window_is_finer() -> None:
    con = _db(100_000)
    coarse = _fetch(con, 2000)
    fine = _fetch(con, 2000, lo=1000, hi=2000)
    assert fine["episode"].min() >= 1000 and fine["episode"].max() <= 2000
    inside = ((coarse["episode"] >= 1000) & (coarse["episode"] <= 2000)).sum()
    assert len(fine["seq"]) == 1001 > inside
    # The zoomed window's rolling means look back before it, as over the whole run.
    whole = _fetch(con, 200_000)
    sel = (whole["episode"] >= 1000) & (whole["episode"] <= 2000)
    for col in ("profit_smooth", "sharpe_smooth", "win_rate_pct"):
        np.testing.assert_allclose(fine[col], whole[col][sel])


def test_downsampled_smooth_lines_are_bucket_means() -> None:
    con = _db(50_000)
    got = _fetch(con, 1000)
    assert len(got["seq"]) <= 1000
    assert np.isfinite(got["profit_smooth"]).all()
    assert got["profit_smooth"].min() >= got["profit"].min()
    assert got["profit_smooth"].max() <= got["profit"].max()
    np.testing.assert_allclose(got["win_rate_pct"], 50.0)


def test_kpi_colour_rules() -> None:
    assert profit_level(10.0) == "good"
    assert profit_level(0.0) == "warn" and profit_level(-499.0) == "warn"
    assert profit_level(-501.0) == "bad" and profit_level(math.nan) == "bad"
    assert sharpe_level(1.0) == "good" and sharpe_level(0.5) == "warn" and sharpe_level(-0.1) == "bad"
    assert status_level("running") == "good" and status_level("stalled") == "warn"
    assert status_level("lost") == "bad" and status_level("crashed") == "bad"
    assert best_episode_level(90, 100) == "good"
    assert best_episode_level(10, 100) == "warn"
    assert best_episode_level(10, 200) == "bad"
    assert profit_level(None) == "none"


def test_kpi_state_follows_streamed_rows() -> None:
    state = KpiState.from_record(
        {
            "n": 2,
            "episode": 2,
            "profit": 5.0,
            "best_profit": 7.0,
            "best_episode": 1,
            "recent": [7.0, 5.0],
            "recent_sharpe": [0.5, 1.5],
        }
    )
    state.update([3, 4], [9.0, -1.0], [2.0, 2.0])
    assert (state.episode, state.profit, state.best_profit, state.best_episode) == (4, -1.0, 9.0, 3)
    assert state.recent_average == pytest.approx(5.0)
    by_key = {c.key: c for c in cards(state, "running")}
    assert list(by_key) == ["episode", "profit", "best_profit", "best_episode", "recent", "sharpe"]
    assert by_key["profit"].level == "warn" and by_key["best_profit"].level == "good"
    assert by_key["sharpe"].text == "1.50" and by_key["sharpe"].level == "good"
    html = cards_html(list(by_key.values()), get_theme("dark"))
    assert html.count("td-card ") == 6 and "level-warn" in html


@pytest.mark.parametrize("theme", ["cyberpunk", "dark", "light"])
def test_live_figures_are_the_guides_8_plots(theme: str) -> None:
    t = get_theme(theme)
    runs = [RunSources.new("a", "run a", t.run_color(0)), RunSources.new("b", "run b", t.run_color(1))]
    figs = live_figures(t, runs)
    assert list(figs) == list(PLOTS)
    assert figs["loss"].y_scale.__class__.__name__ == "LogScale"
    assert (figs["win_rate"].y_range.start, figs["win_rate"].y_range.end) == (0, 100)
    spans = {
        k: sorted(s.location for s in f.center if s.__class__.__name__ == "Span") for k, f in figs.items()
    }
    assert spans["profit"] == [0.0] and spans["win_rate"] == [50.0] and spans["sharpe"] == [0.0, 1.0]
    assert all(f.background_fill_color == t.plot_bg for f in figs.values())
    for key, fig in figs.items():
        sources = {r.data_source.name for r in fig.renderers}
        assert len(sources) == 2, key  # both runs overlaid
    q_glyphs = {r.glyph.__class__.__name__ for r in figs["q_values"].renderers}
    assert q_glyphs == {"VArea", "Line"}  # mean line with a std band
    assert figs["profit"].x_range is figs["sharpe"].x_range


def test_unknown_theme_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="cyberpunk, dark, light"):
        get_theme("neon")


def test_trainer_table_shows_host_pid_state_rate_and_last_seen() -> None:
    html = fleet_html(
        [
            {
                "name": "t0",
                "host": "gpu1",
                "pid": 42,
                "status": "stalled",
                "recent": 50,
                "episodes": 900,
                "last_seen": 95.0,
            }
        ],
        now=100.0,
    )
    for text in ("gpu1", "42", "stalled", "5.0", "900", "5 s ago", "lvl-warn"):
        assert text in html


def _demo_sharpe(runs: int, episodes: int) -> list[np.ndarray]:
    """The Sharpe plot's line (10-episode mean) of demo trainers: each run's first episode
    has a Sharpe of several hundred (one return, no spread)."""
    from traindash.cli.demo_trainer import DemoAgent

    out = []
    for seed in range(runs):
        agent = DemoAgent(seed=seed, episodes=1000)
        out.append(rolling_mean(np.array([agent.step()["sharpe"] for _ in range(episodes)]), 10))
    return out


@pytest.mark.parametrize("episodes", [50, 300, 2000])
def test_the_sharpe_axis_fits_the_bulk_not_the_first_episodes(episodes: int) -> None:
    lines = _demo_sharpe(3, episodes)
    assert max(abs(line[0]) for line in lines) > 250  # what used to flatten the curve
    lo, hi = robust_range(lines, include=(0.0, 1.0))
    assert lo <= 0.0 and hi >= 1.0
    assert lo > -15 and hi < 20, (lo, hi)
    values = np.concatenate(lines)
    # the bulk is shown; what is left out is the first episodes' 10-episode means
    assert np.mean((values >= lo) & (values <= hi)) > 0.75


def test_the_robust_range_keeps_a_trend_and_tolerates_gaps() -> None:
    trend = np.linspace(-2.0, 10.0, 500)
    lo, hi = robust_range([trend])
    assert lo < -2.0 and hi > 10.0  # no real value is cut off
    assert robust_range([np.array([np.nan, np.inf]), np.array([])]) is None
    assert robust_range([np.full(20, 3.0)], include=(0.0,)) == pytest.approx((-0.3, 3.3))


def test_fit_range_sets_the_range_and_its_reset_but_does_not_twitch() -> None:
    from bokeh.models import Range1d

    rng = Range1d(start=-1, end=2)
    assert fit_range(rng, (-3.0, 7.0))
    assert (rng.start, rng.end, rng.reset_start, rng.reset_end) == (-3.0, 7.0, -3.0, 7.0)
    assert not fit_range(rng, (-3.2, 7.3))  # within 5 % of the span
    assert not fit_range(rng, None)
    assert fit_range(rng, (-3.0, 9.0)) and rng.end == 9.0

"""Pure parts of the RL dashboard: scalars downsampling SQL, objective KPI cards, SPS, axis switch."""

from __future__ import annotations

import duckdb

from traindash.collector.migrations import migrations
from traindash.reports import trainer_table_sql as runs_sql
from traindash.ui.figures import EPISODE_PLOTS, RunSources, live_figures, set_episode_axis
from traindash.ui.fleet import fleet_html
from traindash.ui.history import kpi_sql, scalars_sql
from traindash.ui.kpi import KpiState, cards
from traindash.ui.scalars import group_of
from traindash.ui.themes import get_theme


def _db() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for m in migrations():
        m.up(con)
    con.execute(
        "INSERT INTO runs (run_id, objective, status, role) "
        "VALUES ('r', 'episode_return', 'running', 'trainer')"
    )
    return con


def test_scalars_history_is_downsampled_per_name_keeping_ends_and_extremes() -> None:
    con = _db()
    con.execute(
        "INSERT INTO scalars (run_id, seq, ts, step, name, value) SELECT 'r', i, now(), i, 'losses/v', "
        "CASE WHEN i = 7777 THEN 1e6 ELSE i END FROM range(1, 50001) t(i)"
    )
    con.execute(
        "INSERT INTO scalars (run_id, seq, ts, step, name, value) "
        "SELECT 'r', i, now(), i, 'charts/sps', 5 FROM range(1, 11) t(i)"
    )
    rows = con.execute(scalars_sql("r", max_points=400)).fetchall()
    v = [(step, value) for name, _seq, step, value, _ts in rows if name == "losses/v"]
    assert len(v) <= 400 and v[0][0] == 1 and v[-1][0] == 50_000 and (7777, 1e6) in v
    assert len([r for r in rows if r[0] == "charts/sps"]) == 10  # a short series is sent whole


def test_kpi_cards_and_sql_follow_the_objective() -> None:
    con = _db()
    con.execute(
        "INSERT INTO episodes (run_id, seq, ts, episode, episode_return, env_step) "
        "SELECT 'r', i, now() + to_seconds(i), i, i % 10, i * 100 FROM range(1, 31) t(i)"
    )
    cols = [d[0] for d in con.execute(kpi_sql("r", "episode_return")).description]
    rec = dict(zip(cols, con.execute(kpi_sql("r", "episode_return")).fetchone(), strict=True))
    assert (rec["profit"], rec["best_profit"], rec["best_episode"]) == (0.0, 9.0, 9)
    titles = [c.label for c in cards(KpiState.from_record(rec, "episode_return"), "running")]
    assert titles[1:3] == ["Latest episode return", "Best episode return"]
    assert [c.label for c in cards(KpiState(), None)][1:3] == ["Latest profit", "Best profit"]
    run = dict(
        zip(
            [d[0] for d in con.execute(runs_sql()).description],
            con.execute(runs_sql()).fetchone(),
            strict=True,
        )
    )
    assert run["objective"] == "episode_return" and run["sps"] == 100.0
    assert "SPS" in fleet_html([run]) and ">100<" in fleet_html([run])


def test_axis_switch_points_every_episode_glyph_at_the_column() -> None:
    figs = live_figures(get_theme("dark"), [RunSources.new("r", "r", "#fff", "episode_return")])
    assert "episode_return" in figs["profit"].title.text
    set_episode_axis(figs, "env_step", "env step")
    for key in EPISODE_PLOTS:
        xs = {r.glyph.x for r in figs[key].renderers}
        assert xs == {"env_step"}, key
        assert figs[key].xaxis[0].axis_label == "env step"


def test_groups_are_the_part_before_the_first_slash() -> None:
    assert group_of("losses/value_loss") == "losses"
    assert group_of("a/b/c") == "a" and group_of("sps") == ""

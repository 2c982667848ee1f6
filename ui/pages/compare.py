"""The compare page: pick runs, overlay their curves, hyperparameters side by side,
and the leaderboard sorted by any metric."""

from __future__ import annotations

import json
from typing import Any

import panel as pn

from traindash.query import QueryError
from traindash.reports import LEADERBOARD_METRICS, leaderboard_view_sql, runs_by_id_sql
from traindash.ui.context import AppContext, on_destroy, shell
from traindash.ui.figures import RunSources, compare_figure
from traindash.ui.groups import GroupsSection
from traindash.ui.render import css, table_html

# (plot key, column, title)
CURVES = (
    ("profit", "profit_smooth", "Profit (smoothed 10)"),
    ("win_rate", "win_rate_pct", "Win rate (rolling 20, %)"),
    ("sharpe", "sharpe_smooth", "Sharpe (smoothed 10)"),
    ("drawdown", "drawdown", "Drawdown"),
    ("loss", "loss_smooth", "Loss (smoothed 20, log)"),
    ("epsilon", "epsilon", "Epsilon"),
)


def hyperparameter_rows(runs: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Hyperparameters side by side: one row per key, one column per run."""
    parsed = []
    for r in runs:
        raw = r.get("hyperparameters")
        try:
            parsed.append(json.loads(raw) if isinstance(raw, str) else (raw or {}))
        except json.JSONDecodeError:
            parsed.append({})
    keys = sorted({k for p in parsed for k in p})
    columns = ["parameter"] + [str(r.get("name") or r["run_id"]) for r in runs]
    rows = [
        [k] + [json.dumps(p[k]) if isinstance(p.get(k), (dict, list)) else p.get(k) for p in parsed]
        for k in keys
    ]
    return columns, rows


def compare_page(ctx: AppContext) -> pn.Column:
    theme = ctx.session_theme()
    client = ctx.client()
    on_destroy(client.close)
    style = [css(theme)]
    metric = pn.widgets.Select(
        name="Leaderboard by", options=list(LEADERBOARD_METRICS), value="best_objective", width=200
    )
    board = pn.pane.HTML("", stylesheets=style, sizing_mode="stretch_width", name="leaderboard")
    picker = pn.widgets.MultiChoice(
        name="Runs to compare", options={}, value=[], sizing_mode="stretch_width", max_items=8
    )
    hyper = pn.pane.HTML("", stylesheets=style, sizing_mode="stretch_width")
    plots = pn.GridBox(ncols=2, sizing_mode="stretch_width")
    message = pn.pane.HTML("", stylesheets=style)

    def show_board(_e: object = None) -> list[dict[str, Any]]:
        try:
            rows = client.query(leaderboard_view_sql(metric.value)).to_pylist()
        except QueryError as exc:
            message.object = f'<span class="lvl-bad">{exc}</span>'
            return []
        cols = [
            "name",
            "status",
            "episodes",
            "objective",
            "env_steps",
            *(m for m in LEADERBOARD_METRICS if m != "episodes"),
        ]
        board.object = table_html(
            ["#"] + cols, [[i + 1] + [r.get(c) for c in cols] for i, r in enumerate(rows)], "no runs yet"
        )
        return rows

    def show_runs(_e: object = None) -> None:
        ids = list(picker.value)
        if not ids:
            plots.objects, hyper.object = [], '<div class="td-muted">pick runs above</div>'
            return
        try:
            runs = client.query(runs_by_id_sql(ids)).to_pylist()
            by_id = {r["run_id"]: r for r in runs}
            fetches = ctx.prefetch(ids)
            sources = []
            for i, run_id in enumerate(ids):
                src = RunSources.new(
                    run_id, str(by_id.get(run_id, {}).get("name") or run_id), theme.run_color(i)
                )
                h = fetches[run_id].result(timeout=60)
                src.episodes.data, src.model.data = h.episodes, h.model
                sources.append(src)
        except (QueryError, TimeoutError) as exc:
            message.object = f'<span class="lvl-bad">{exc}</span>'
            return
        plots.objects = [
            pn.pane.Bokeh(compare_figure(theme, key, sources, col, title), sizing_mode="stretch_width")
            for key, col, title in CURVES
        ]
        columns, rows = hyperparameter_rows([by_id[i] for i in ids if i in by_id])
        hyper.object = table_html(columns, rows, "no hyperparameters recorded")

    rows = show_board()
    picker.options = {f"{r.get('name') or r['run_id']} · {r['run_id'][-8:]}": r["run_id"] for r in rows}
    wanted = [v.decode() for v in (pn.state.session_args or {}).get("run", [])]
    picker.value = [w for w in wanted if w in picker.options.values()] or [r["run_id"] for r in rows[:3]]
    show_runs()
    metric.param.watch(show_board, "value")
    picker.param.watch(show_runs, "value")
    h = '<div class="td-h">{}</div>'
    section = {
        "background": theme.card_bg,
        "border": f"1px solid {theme.grid}",
        "border-radius": "8px",
        "padding": "6px 10px",
    }
    groups = GroupsSection(ctx, theme, client)
    return shell(
        ctx,
        theme,
        "/compare",
        message,
        pn.Column(
            pn.Row(pn.pane.HTML(h.format("Leaderboard"), stylesheets=style), metric),
            board,
            sizing_mode="stretch_width",
            styles=section,
        ),
        picker,
        plots,
        pn.Column(
            pn.pane.HTML(h.format("Hyperparameters"), stylesheets=style),
            hyper,
            sizing_mode="stretch_width",
            styles=section,
        ),
        groups.panel(section),
    )

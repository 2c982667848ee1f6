"""Pure figure builders: given a theme and per-run data sources, return Bokeh figures.

No I/O and no server state here, so tests can build and inspect every plot directly.
Figures and sources carry ``name`` values (``plot:<key>``, ``episodes:<run_id>``,
``model:<run_id>``) that the browser tests and the benchmark read through BokehJS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.models import (
    BasicTickFormatter,
    ColumnDataSource,
    CustomJS,
    DataRange1d,
    DatetimeTickFormatter,
    HoverTool,
    Range1d,
)
from bokeh.models.annotations import Legend, Span, Title
from bokeh.plotting import figure

from traindash.ui.series import EPISODE_SOURCE, MODEL_SOURCE, empty
from traindash.ui.themes import Theme

# key -> title, in the guide's order.
PLOTS = {
    "profit": "Profit / loss per episode",
    "loss": "Training loss (log)",
    "epsilon": "Epsilon decay",
    "learning_rate": "Learning rate schedule",
    "win_rate": "Win rate (rolling 20, %)",
    "sharpe": "Sharpe ratio (smoothed 10)",
    "drawdown": "Maximum drawdown",
    "q_values": "Q-values (mean ± std)",
}
EPISODE_PLOTS = ("profit", "epsilon", "learning_rate", "win_rate", "sharpe", "drawdown")
MODEL_PLOTS = ("loss", "q_values")
TOOLS = "pan,xwheel_zoom,box_zoom,reset,save"
# robust_range: how far past the quartiles (in interquartile ranges) the bulk may reach.
FENCE_IQR = 3.0
# fit_range: a refit moving both ends by less than this share of the span is not applied.
REFIT_TOLERANCE = 0.05


@dataclass
class RunSources:
    """The two data sources of one run on a page, and how to draw it."""

    run_id: str
    label: str
    color: str
    episodes: ColumnDataSource
    model: ColumnDataSource
    objective: str = "profit"

    @classmethod
    def new(cls, run_id: str, label: str, color: str, objective: str = "profit") -> RunSources:
        return cls(
            run_id,
            label,
            color,
            ColumnDataSource(empty(EPISODE_SOURCE), name=f"episodes:{run_id}"),
            ColumnDataSource(empty(MODEL_SOURCE), name=f"model:{run_id}"),
            objective,
        )


def style(fig: figure, theme: Theme) -> figure:
    fig.background_fill_color = theme.plot_bg
    fig.border_fill_color = theme.card_bg
    fig.outline_line_color = theme.grid
    title = fig.title
    if isinstance(title, Title):
        title.text_color = theme.fg
        title.text_font = theme.font
        title.text_font_size = "13px"
    for axis in (*fig.xaxis, *fig.yaxis):
        axis.axis_line_color = theme.grid
        axis.major_tick_line_color = theme.muted
        axis.minor_tick_line_color = None
        axis.major_label_text_color = theme.muted
        axis.axis_label_text_color = theme.muted
        axis.major_label_text_font = theme.font
        axis.axis_label_text_font_size = "11px"
    fig.xgrid.grid_line_color = theme.grid
    fig.ygrid.grid_line_color = theme.grid
    fig.xgrid.grid_line_alpha = fig.ygrid.grid_line_alpha = 0.8
    fig.toolbar.logo = None
    fig.toolbar.autohide = True
    return fig


def _figure(key: str, theme: Theme, x_range: DataRange1d, x_label: str, **kw: Any) -> figure:
    fig = figure(
        name=f"plot:{key}",
        title=PLOTS[key],
        x_range=x_range,
        tools=TOOLS,
        height=250,
        sizing_mode="stretch_width",
        min_width=300,
        x_axis_label=x_label,
        **kw,
    )
    return style(fig, theme)


def _hline(fig: figure, y: float, theme: Theme, dash: str = "dashed") -> None:
    fig.add_layout(
        Span(
            location=y,
            dimension="width",
            line_color=theme.muted,
            line_dash=dash,
            line_width=1,
            line_alpha=0.9,
        )
    )


def live_figures(theme: Theme, runs: Sequence[RunSources]) -> dict[str, figure]:
    """The guide's 8 plots, every run overlaid in its colour; episode plots share an x range."""
    ep_x = DataRange1d(only_visible=True)
    step_x = DataRange1d(only_visible=True)
    figs = {
        "profit": _figure("profit", theme, ep_x, "episode"),
        "loss": _figure("loss", theme, step_x, "training step", y_axis_type="log"),
        "epsilon": _figure("epsilon", theme, ep_x, "episode"),
        "learning_rate": _figure("learning_rate", theme, ep_x, "episode"),
        "win_rate": _figure("win_rate", theme, ep_x, "episode", y_range=Range1d(start=0, end=100)),
        "sharpe": _figure("sharpe", theme, ep_x, "episode", y_range=Range1d(start=-1, end=2)),
        "drawdown": _figure("drawdown", theme, ep_x, "episode"),
        "q_values": _figure("q_values", theme, step_x, "training step"),
    }
    _hline(figs["profit"], 0.0, theme, "solid")
    _hline(figs["win_rate"], 50.0, theme)
    _hline(figs["sharpe"], 0.0, theme, "solid")
    _hline(figs["sharpe"], 1.0, theme)
    objectives = {run.objective for run in runs}
    if objectives and objectives != {"profit"}:
        figs["profit"].title.text = f"Objective per episode: {', '.join(sorted(objectives))}"  # type: ignore[union-attr]
    legend_items: list[Any] = []
    for run in runs:
        c, ep, mo = run.color, run.episodes, run.model
        # The objective plot: the run's objective column (profit for the guide's runs).
        raw = figs["profit"].scatter("episode", "objective", source=ep, size=3, color=c, alpha=0.35)
        smooth = figs["profit"].line("episode", "objective_smooth", source=ep, color=c, line_width=2)
        legend_items.append((run.label, [smooth, raw]))
        figs["profit"].add_tools(
            HoverTool(
                renderers=[smooth],
                tooltips=[
                    ("run", run.label),
                    ("episode", "@episode{0,0}"),
                    ("env step", "@env_step{0,0}"),
                    (run.objective, "@objective{0,0.00}"),
                    ("smoothed", "@objective_smooth{0,0.00}"),
                ],
            )
        )
        figs["loss"].line("step", "loss", source=mo, color=c, alpha=0.3)
        figs["loss"].line("step", "loss_smooth", source=mo, color=c, line_width=2)
        figs["epsilon"].line("episode", "epsilon", source=ep, color=c, line_width=2)
        figs["learning_rate"].step("episode", "learning_rate", source=ep, color=c, line_width=2, mode="after")
        figs["win_rate"].line("episode", "win_rate_pct", source=ep, color=c, line_width=2)
        figs["sharpe"].line("episode", "sharpe_smooth", source=ep, color=c, line_width=2)
        figs["drawdown"].varea(x="episode", y1=0, y2="drawdown", source=ep, color=c, alpha=0.18)
        figs["drawdown"].line("episode", "drawdown", source=ep, color=c, line_width=1.5)
        figs["q_values"].varea(x="step", y1="q_lo", y2="q_hi", source=mo, color=c, alpha=0.2)
        figs["q_values"].line("step", "q_mean", source=mo, color=c, line_width=2)
    figs["learning_rate"].yaxis.formatter = BasicTickFormatter(precision=1, power_limit_low=-2)
    if legend_items:
        legend = Legend(
            items=legend_items,
            location="top_left",
            click_policy="hide",
            background_fill_alpha=0.4,
            background_fill_color=theme.card_bg,
            label_text_color=theme.fg,
            label_text_font_size="10px",
            border_line_alpha=0,
            spacing=0,
            padding=4,  # type: ignore[arg-type]  # bokeh's stubs reject a plain int
        )
        figs["profit"].add_layout(legend)
    return figs


def set_episode_axis(figs: dict[str, figure], column: str, label: str) -> None:
    """Point every episode plot's glyphs at ``column`` (episode, env_step or wall) as x."""
    for key in EPISODE_PLOTS:
        fig = figs[key]
        for renderer in fig.renderers:
            glyph = getattr(renderer, "glyph", None)
            if glyph is not None and hasattr(glyph, "x"):
                glyph.x = column
        axis = fig.xaxis[0]
        axis.axis_label = label
        axis.formatter = DatetimeTickFormatter() if column == "wall" else BasicTickFormatter()


def scalar_figure(theme: Theme, group: str) -> figure:
    """An empty chart for one group of logged scalars (``losses/*``); lines are added per name."""
    fig = figure(
        name=f"scalars:{group}",
        title=f"{group}/*" if group else "scalars",
        tools=TOOLS,
        height=230,
        sizing_mode="stretch_width",
        min_width=300,
        x_axis_label="step",
    )
    style(fig, theme)
    fig.add_tools(
        HoverTool(tooltips=[("name", "$name"), ("step", "@step{0,0}"), ("value", "@value{0,0.0000}")])
    )
    return fig


def compare_figure(theme: Theme, key: str, runs: Sequence[RunSources], metric: str, title: str) -> figure:
    """One metric of several runs overlaid (the compare page)."""
    x = "step" if key in MODEL_PLOTS else "episode"
    fig = figure(
        name=f"compare:{metric}",
        title=title,
        tools=TOOLS,
        height=260,
        sizing_mode="stretch_width",
        x_axis_label=x,
        y_axis_type="log" if metric.startswith("loss") else "linear",
    )
    style(fig, theme)
    items: list[Any] = []
    for run in runs:
        source = run.model if key in MODEL_PLOTS else run.episodes
        items.append((run.label, [fig.line(x, metric, source=source, color=run.color, line_width=2)]))
    if items:
        fig.add_layout(
            Legend(
                items=items,
                location="top_left",
                background_fill_alpha=0.4,
                background_fill_color=theme.card_bg,
                label_text_color=theme.fg,
                label_text_font_size="10px",
                border_line_alpha=0,
            )
        )
    return fig


def robust_range(
    values: Sequence[np.ndarray],
    include: Sequence[float] = (),
    pct: float = 1.0,
    pad: float = 0.1,
    fence: float = FENCE_IQR,
) -> tuple[float, float] | None:
    """A y range over the bulk of the finite values, padded, covering ``include``.

    The bulk: the 1st..99th percentile, and never beyond ``fence`` interquartile ranges
    outside the quartiles. The Sharpe ratio of a run's first episodes is often huge (a
    tiny standard deviation), and its 10-episode mean stays huge for ten episodes: in the
    first few hundred episodes of a run that is more than 1 % of the points, so the
    percentiles alone would still squash the rest of the curve flat.
    """
    finite = [v[np.isfinite(v)] for v in values if len(v)]
    finite = [v for v in finite if len(v)]
    if not finite:
        return None
    allv = np.concatenate(finite)
    lo, hi, q1, q3 = np.percentile(allv, [pct, 100 - pct, 25, 75])
    if q3 > q1:
        lo, hi = max(lo, q1 - fence * (q3 - q1)), min(hi, q3 + fence * (q3 - q1))
    lo, hi = min([lo, *include]), max([hi, *include])
    span = (hi - lo) or 1.0
    return float(lo - pad * span), float(hi + pad * span)


def fit_range(rng: Range1d, fit: tuple[float, float] | None, tolerance: float = REFIT_TOLERANCE) -> bool:
    """Set ``rng`` (and what the reset tool returns to) to ``fit``; True if it changed.

    Ends that moved less than ``tolerance`` of the span stay, so a range refitted as rows
    stream in does not twitch on every update.
    """
    if fit is None:
        return False
    start, end = rng.start, rng.end
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):  # numeric axes only
        near = tolerance * max(abs(end - start), 1e-12)
        if abs(fit[0] - start) <= near and abs(fit[1] - end) <= near:
            return False
    rng.start, rng.end = fit
    rng.reset_start, rng.reset_end = fit
    return True


def lag_probe(source: ColumnDataSource, lag_div: object) -> CustomJS:
    """Browser-side log→screen lag: on each stream, now minus the newest row's log time.

    The figure is kept in ``window.traindash_lags`` (for tests and the benchmark) and
    shown in ``lag_div``.
    """
    return CustomJS(
        args={"source": source, "div": lag_div},
        code="""
const ts = source.data.ts;
if (!ts || ts.length === 0) { return; }
const lag = Date.now() / 1000 - ts[ts.length - 1];
const lags = (window.traindash_lags = window.traindash_lags || []);
lags.push(lag);
if (lags.length > 1000) { lags.shift(); }
const sorted = [...lags.slice(-100)].sort((a, b) => a - b);
const p50 = sorted[Math.floor(sorted.length / 2)];
div.text = `log → screen: ${(lag * 1000).toFixed(0)} ms (median ${(p50 * 1000).toFixed(0)} ms)`;
""",
    )

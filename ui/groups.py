"""The compare page's groups section: each configuration's seeds drawn as one band (issue 17).

:func:`traindash.aggregate.compare` runs on the server's worker pool with its own query
client; a periodic callback on the session's thread applies the result to Bokeh models (only
that thread touches them). While a group has running runs, the section asks again every
``REFRESH_S``: the bands follow the runs live, with nothing cached between calls.
"""

from __future__ import annotations

import html
import logging
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, cast

import panel as pn
from bokeh.models import ColumnDataSource
from bokeh.models.annotations import Legend, LegendItem, Title
from bokeh.plotting import figure

from traindash.aggregate import STATS, X_AXES, Comparison, ci_text, compare
from traindash.groups import columns, numeric_columns
from traindash.query import QueryError
from traindash.ui.context import AppContext, on_destroy
from traindash.ui.figures import TOOLS, style
from traindash.ui.render import css, table_html
from traindash.ui.themes import Theme

log = logging.getLogger(__name__)

REFRESH_S = 5.0
POLL_MS = 300
OBJECTIVE = "(objective)"
MAX_PAIRS_GROUPS = 8  # P(X > Y) for every pair of up to 8 groups (28 pairs)
GROUP_COLUMNS = (
    "group",
    "N",
    "running",
    "x reached",
    "IQM [95% CI]",
    "mean",
    "median",
    "optimality gap [95% CI]",
)
CELL_CLASSES = ("g-label", "g-n", "g-running", "g-x", "g-iqm", "g-mean", "g-median", "g-gap")


@dataclass
class Outcome:
    """What one computation produced (on a worker thread): the comparison and its pairs."""

    result: Comparison | None
    pairs: list[dict[str, Any]]
    error: str = ""


def group_rows(result: Comparison) -> list[list[Any]]:
    return [
        [
            r["group"],
            r["n"],
            r["running"],
            r["x_final"],
            ci_text(r["iqm"], r["iqm_low"], r["iqm_high"]),
            r["mean"],
            r["median"],
            ci_text(r["optimality_gap"], r["gap_low"], r["gap_high"]),
        ]
        for r in result.final().to_pylist()
    ]


def pairs_html(pairs: list[dict[str, Any]]) -> str:
    rows = [[p["x"], p["y"], ci_text(p["probability"], p["low"], p["high"], 3)] for p in pairs]
    return table_html(["X", "Y", "P(X > Y) [95% CI]"], rows, "")


class GroupsSection:
    """One session's groups section: widgets, the band figure and the tables."""

    def __init__(self, ctx: AppContext, theme: Theme, client: Any) -> None:
        self.ctx, self.theme = ctx, theme
        args = {k: (v[0].decode() if v else "") for k, v in (pn.state.session_args or {}).items()}
        try:
            metrics = numeric_columns(columns(client))
        except QueryError:
            metrics = []
        self.group_by = pn.widgets.TextInput(
            name="Group by",
            value=args.get("group_by", ""),
            placeholder="every hyperparameter but the seed · tag · lr,gamma",
            width=300,
        )
        self.x = pn.widgets.Select(name="x", options=list(X_AXES), value=_pick(args, "x", X_AXES), width=110)
        self.stat = pn.widgets.Select(
            name="Statistic", options=list(STATS), value=_pick(args, "stat", STATS), width=100
        )
        self.metric = pn.widgets.Select(
            name="Metric", options=[OBJECTIVE, *metrics], value=OBJECTIVE, width=170
        )
        self.refresh = pn.widgets.Button(name="Refresh", width=90)
        style_ = [css(theme)]
        self.table = pn.pane.HTML("", stylesheets=style_, sizing_mode="stretch_width", name="groups:table")
        self.pairs = pn.pane.HTML("", stylesheets=style_, sizing_mode="stretch_width", name="groups:pairs")
        self.message = pn.pane.HTML("", stylesheets=style_)
        self.fig = style(
            figure(
                name="groups:curves",
                title="Seeds and groups",
                tools=TOOLS,
                height=320,
                sizing_mode="stretch_width",
                x_axis_label=self.x.value,
            ),
            theme,
        )
        self.legend = Legend(
            items=[],
            location="top_left",
            background_fill_alpha=0.4,
            background_fill_color=theme.card_bg,
            label_text_color=theme.fg,
            label_text_font_size="10px",
            border_line_alpha=0,
        )
        self.fig.add_layout(self.legend)
        self.sources: dict[str, ColumnDataSource] = {}
        self._future: Future | None = None
        self._again = False
        self._live = False
        self._asked = 0.0
        for w in (self.group_by, self.x, self.stat, self.metric):
            w.param.watch(self.request, "value")
        self.refresh.on_click(self.request)
        self.callback = pn.state.add_periodic_callback(self.poll, period=POLL_MS)
        on_destroy(self.callback.stop)
        self.request()

    def options(self) -> dict[str, Any]:
        metric = None if self.metric.value == OBJECTIVE else self.metric.value
        return {
            "group_by": self.group_by.value or None,
            "x": self.x.value,
            "stat": self.stat.value,
            "metric": metric,
        }

    def compute(self, options: dict[str, Any]) -> Outcome:
        """On a worker thread, with a query client of its own."""
        try:
            with self.ctx.client() as client:
                result = compare(client, **options)
            shown = [g for g in result.groups if g.scores.size]
            pairs = result.improvement().to_pylist() if len(shown) <= MAX_PAIRS_GROUPS else []
            return Outcome(result, pairs)
        except (QueryError, ValueError) as exc:
            return Outcome(None, [], str(exc))
        except Exception as exc:  # a worker's failure must reach the page, not end its polling
            log.exception("comparing groups failed")
            return Outcome(None, [], f"comparing groups failed: {exc}")

    def request(self, *_: object) -> None:
        if self._future is not None and not self._future.done():
            self._again = True  # ask once more when this one is in
            return
        self._asked = time.monotonic()
        self._future = self.ctx.submit(self.compute, self.options())

    def poll(self) -> None:
        future = self._future
        if future is not None and future.done():
            self._future = None
            self.apply(future.result())
            if self._again:
                self._again = False
                self.request()
        elif future is None and self._live and time.monotonic() - self._asked >= REFRESH_S:
            self.request()

    def apply(self, outcome: Outcome) -> None:
        """Show an outcome (on the session's thread)."""
        self.message.object = (
            f'<span class="lvl-bad">{html.escape(outcome.error)}</span>' if outcome.error else ""
        )
        result = outcome.result
        if result is None:
            return
        self.fig.xaxis[0].axis_label = result.x_axis
        metrics = sorted({g.metric for g in result.groups if g.runs}) or ["-"]
        title = f"{result.stat.upper()} of {', '.join(metrics)} across seeds, 95% bootstrap band"
        if isinstance(self.fig.title, Title):
            self.fig.title.text = title
        shown = set()
        for g in result.groups:
            shown.add(g.label)
            data = {"x": g.x, "value": g.center, "low": g.low, "high": g.high}
            source = self.sources.get(g.label)
            if source is None:
                source = self._add_group(g.label, self.theme.run_color(len(self.sources)))
            source.data = data
        for label, source in self.sources.items():
            if label not in shown:
                source.data = {"x": [], "value": [], "low": [], "high": []}
        self._live = any(r["running"] for r in result.final().to_pylist())
        self.table.object = table_html(
            GROUP_COLUMNS,
            group_rows(result),
            "no runs yet",
            [CELL_CLASSES] * len(result.groups),
        )
        self.pairs.object = pairs_html(outcome.pairs) if outcome.pairs else ""

    def _add_group(self, label: str, color: str) -> ColumnDataSource:
        source = ColumnDataSource({"x": [], "value": [], "low": [], "high": []}, name=f"group:{label}")
        band = self.fig.varea(
            "x", "low", "high", source=source, fill_color=color, fill_alpha=0.22, name=f"band:{label}"
        )
        line = self.fig.line("x", "value", source=source, color=color, line_width=2, name=f"curve:{label}")
        self.legend.items = [*self.legend.items, LegendItem(label=label, renderers=cast(Any, [line, band]))]
        self.sources[label] = source
        return source

    def panel(self, section_style: dict[str, str]) -> pn.Column:
        head = '<div class="td-h">Seeds and groups</div>'
        return pn.Column(
            pn.pane.HTML(head, stylesheets=[css(self.theme)]),
            pn.Row(self.group_by, self.x, self.stat, self.metric, self.refresh),
            self.message,
            pn.pane.Bokeh(self.fig, sizing_mode="stretch_width"),
            self.table,
            self.pairs,
            sizing_mode="stretch_width",
            styles=section_style,
        )


def _pick(args: dict[str, str], key: str, choices: tuple[str, ...]) -> str:
    return args[key] if args.get(key) in choices else choices[0]

"""The live page: run picker, the 8 plots, KPI cards, trainer table, alert feed and lag."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, wait
from typing import Any, cast

import numpy as np
import panel as pn
from bokeh.models import Range1d
from bokeh.models.widgets import Div

from traindash.query import QueryError
from traindash.reports import LIVE_STATUSES, trainer_table_sql
from traindash.ui import history
from traindash.ui.context import AppContext, on_destroy, shell
from traindash.ui.figures import (
    EPISODE_PLOTS,
    PLOTS,
    RunSources,
    fit_range,
    lag_probe,
    live_figures,
    robust_range,
    set_episode_axis,
)
from traindash.ui.fleet import FLEET_CSS, fleet_html
from traindash.ui.kpi import KpiState, cards
from traindash.ui.render import alerts_html, cards_html, css
from traindash.ui.scalars import ScalarsPanel
from traindash.ui.series import (
    EPISODE_AXES,
    EPISODE_ROLLING,
    EPISODE_SOURCE,
    MODEL_ROLLING,
    MODEL_SOURCE,
    Roller,
    concat,
    episode_rows,
    model_rows,
)
from traindash.ui.streams import SeqMarks, Stream, merge_window
from traindash.ui.system import SystemSection
from traindash.ui.themes import Theme
from traindash.wire import RecordKind

log = logging.getLogger(__name__)

ROLLOVER = 50_000
MAX_DEFAULT_RUNS = 4
TABLE_REFRESH_S = 2.0
FIRST_QUERY_TIMEOUT = 5.0
INLINE_WAIT = 1.5  # s the first page waits for history so it arrives with the document
ZOOMED = 0.8  # a visible window narrower than this share of the data counts as a zoom


def run_label(run: dict[str, Any]) -> str:
    mark = "●" if run.get("status") in LIVE_STATUSES else "○"
    return f"{mark} {run.get('name') or run['run_id']} · {run['run_id'][-8:]}"


def default_selection(runs: list[dict[str, Any]], wanted: list[str]) -> list[str]:
    """Runs named in the URL if any, else the live ones (at most a few), else the newest."""
    ids = [r["run_id"] for r in runs]
    picked = [w for w in wanted if w in ids]
    if picked:
        return picked
    live = [r["run_id"] for r in runs if r.get("status") in LIVE_STATUSES]
    return live[:MAX_DEFAULT_RUNS] or ids[:1]


class RunView:
    """One selected run on the page: its sources, rolling state and what was already shown."""

    def __init__(self, run_id: str, label: str, color: str, objective: str = "profit") -> None:
        self.objective = objective
        self.sources = RunSources.new(run_id, label, color, objective)
        self.ep_roll = Roller(EPISODE_ROLLING)
        self.mo_roll = Roller(MODEL_ROLLING)
        self.marks = SeqMarks()  # per (kind, stream): a run's streams each count their own seqs
        self.kpi = KpiState()
        self.downsampled = False

    def apply(self, h: history.History) -> None:
        """Show fetched history (on the document's thread)."""
        self.sources.episodes.data = h.episodes
        self.sources.model.data = h.model
        self.ep_roll.seed(h.tails)
        self.mo_roll.seed(h.tails)
        self.marks = h.marks  # holds the rows' stream ids (``sid``) and what the history shows
        self.downsampled = h.downsampled
        self.objective = self.sources.objective = h.objective
        self.kpi = KpiState.from_record(h.kpi, h.objective)

    def new_rows(self, kind: RecordKind, stream: Stream, cols: dict[str, Any]) -> dict[str, Any] | None:
        """The part of a streamed section of ``stream`` not yet shown (history and stream may
        overlap), with the stream's id; None when nothing is new."""
        new = self.marks.take(kind, stream, cols)
        if new is None:
            return None
        sid = self.marks.sid(stream)
        if kind is RecordKind.EPISODE:
            return episode_rows(new, self.ep_roll, self.objective, sid)
        return model_rows(new, self.mo_roll, sid)


class LiveSession:
    """Everything one browser tab of the live page holds; runs on that session's thread."""

    def __init__(self, ctx: AppContext, theme: Theme) -> None:
        self.ctx, self.theme = ctx, theme
        self.client = ctx.client()
        self.buffer = ctx.feed.register()
        self.runs: list[dict[str, Any]] = []
        self.views: dict[str, RunView] = {}
        self.status: dict[str, str] = {}
        self._table_at = 0.0
        self._options_key: tuple = ()
        style = [css(theme)]
        self.picker = pn.widgets.MultiChoice(
            name="Runs (● live first; pick several to overlay)",
            options={},
            value=[],
            sizing_mode="stretch_width",
            max_items=8,
            solid=False,
            stylesheets=[f"label {{ color: {theme.muted}; }}"],
        )
        self.kpis = pn.pane.HTML("", stylesheets=style, sizing_mode="stretch_width", name="kpis")
        self.lag = Div(
            text="log → screen: waiting for rows",
            name="lag",
            styles={"color": theme.muted, "font-size": "12px", "white-space": "nowrap"},
        )
        self.grid = pn.GridBox(ncols=2, sizing_mode="stretch_width")
        self.axis = pn.widgets.RadioButtonGroup(name="x axis", options=list(EPISODE_AXES), value="episode")
        self.scalars = ScalarsPanel(theme)
        self._figs: dict[str, Any] = {}
        self.trainers = pn.pane.HTML("", stylesheets=[*style, FLEET_CSS], sizing_mode="stretch_width")
        # The table is rebuilt on every refresh, so a block opened by a click would close
        # again: this box keeps every run's streams open.
        self.show_streams = pn.widgets.Checkbox(name="show every stream", value=False)
        self.show_streams.param.watch(lambda _: self._render_fleet(), "value")
        self.alerts = pn.pane.HTML("", stylesheets=style, sizing_mode="stretch_width")
        self.message = pn.pane.HTML("", stylesheets=style, sizing_mode="stretch_width")
        self.system = SystemSection(ctx, theme)
        self.callback: Any = None
        self.loaded = False
        self._prefetch: dict[str, Future] | None = None
        self._tables: Future | None = None
        self._generation = 0
        self.closed = False
        self.doc: Any = None
        self._zoom: tuple[float, float, Future] | None = None

    # -- building -----------------------------------------------------------------------
    def layout(self) -> pn.Column:
        wanted = [v.decode() for v in (pn.state.session_args or {}).get("run", [])]
        self.refresh_runs()
        self.picker.value = default_selection(self.runs, wanted)
        self.doc = pn.state.curdoc
        self.rebuild(inline_wait=INLINE_WAIT)
        self.picker.param.watch(lambda _e: self.rebuild(), "value")
        self.axis.param.watch(lambda _e: self.apply_axis(), "value")
        self.callback = pn.state.add_periodic_callback(self.tick, period=self.ctx.config.update_interval)
        on_destroy(self.close)
        t = self.theme
        section = {
            "background": t.card_bg,
            "border": f"1px solid {t.grid}",
            "border-radius": "8px",
            "padding": "6px 10px",
        }
        h = '<div class="td-h">{}</div>'
        return shell(
            self.ctx,
            t,
            "/",
            pn.Row(self.picker, sizing_mode="stretch_width"),
            self.message,
            self.kpis,
            pn.Row(pn.pane.HTML(h.format("x axis"), stylesheets=[css(t)]), self.axis),
            # dynamic: a tab's plots are drawn only while it is shown (each plot costs every
            # layout pass of the page)
            pn.Tabs(
                ("Training", self.grid),
                ("System", pn.Column(self.system.panel, sizing_mode="stretch_width", styles=section)),
                dynamic=True,
                sizing_mode="stretch_width",
                stylesheets=[
                    f".bk-tab {{ color: {t.muted}; }} .bk-tab.bk-active {{ color: {t.accent}; "
                    f"background: {t.card_bg}; border-color: {t.grid}; }}"
                ],
            ),
            pn.pane.HTML(h.format("Scalars"), stylesheets=[css(t)]),
            self.scalars.grid,
            pn.Row(
                pn.Column(
                    pn.pane.HTML(h.format("Trainers"), stylesheets=[css(t)]),
                    self.show_streams,
                    self.trainers,
                    sizing_mode="stretch_width",
                    styles=section,
                ),
                pn.Column(
                    pn.pane.HTML(h.format("Alerts"), stylesheets=[css(t)]),
                    self.alerts,
                    sizing_mode="stretch_width",
                    styles=section,
                ),
                sizing_mode="stretch_width",
            ),
            header_extra=pn.pane.Bokeh(self.lag, align="center"),
        )

    def refresh_runs(self) -> None:
        try:
            self.apply_runs(self.client.query(trainer_table_sql(), timeout=FIRST_QUERY_TIMEOUT).to_pylist())
        except QueryError as exc:
            self.message.object = f'<div class="lvl-bad">collector not answering: {exc}</div>'

    def apply_runs(self, runs: list[dict[str, Any]]) -> None:
        self.runs = runs
        self.message.object = ""
        self.status = {r["run_id"]: r.get("status") or "" for r in self.runs}
        key = tuple((r["run_id"], r.get("status")) for r in self.runs)
        if key != self._options_key:
            self._options_key = key
            self.picker.options = {run_label(r): r["run_id"] for r in self.runs}

    def rebuild(self, inline_wait: float = 0.0) -> None:
        """New sources and figures for the picked runs; their history follows (see load).

        History is fetched on workers while the figures are built. On page load the page
        waits up to ``inline_wait`` for it, so the first document already holds the data;
        otherwise it is applied on the document's thread when it arrives
        (``add_next_tick_callback`` is Bokeh's thread-safe door).
        """
        labels = {r["run_id"]: (r.get("name") or r["run_id"]) for r in self.runs}
        objectives = {r["run_id"]: r.get("objective") or "profit" for r in self.runs}
        self.loaded = False
        ids = list(self.picker.value)
        self._prefetch = self.ctx.prefetch(ids)
        generation = self._generation = self._generation + 1
        self.views = {
            run_id: RunView(
                run_id, labels.get(run_id, run_id), self.theme.run_color(i), objectives.get(run_id, "profit")
            )
            for i, run_id in enumerate(ids)
        }
        sources = [v.sources for v in self.views.values()]
        figs = self._figs = live_figures(self.theme, sources)
        self.scalars.reset(sources)
        if self.axis.value != "episode":
            set_episode_axis(figs, EPISODE_AXES[self.axis.value], self.axis.value)
        self.system.rebuild([(s.run_id, s.label, s.color) for s in sources])
        for view in self.views.values():
            # js_on_change("streaming") fires in the browser after each stream() lands.
            view.sources.episodes.js_on_change("streaming", lag_probe(view.sources.episodes, self.lag))
        self._sharpe = figs["sharpe"]
        self.grid.objects = [pn.pane.Bokeh(figs[k], sizing_mode="stretch_width") for k in PLOTS]
        self._ep_range: Any = figs[EPISODE_PLOTS[0]].x_range
        self._last_range: tuple = (None, None)
        self._refined: tuple = (None, None)
        self._zoom = None
        pending = list(self._prefetch.values())
        if not pending or (inline_wait > 0 and not wait(pending, timeout=inline_wait).not_done):
            self.load(generation)
            return
        for future in pending:
            future.add_done_callback(lambda _f: self._fetched(generation))

    def _fetched(self, generation: int) -> None:
        prefetch = self._prefetch
        if self.closed or generation != self._generation:
            return
        if prefetch and all(f.done() for f in prefetch.values()):
            self.doc.add_next_tick_callback(lambda: self.load(generation))

    def load(self, generation: int) -> None:
        """Fill every run's sources from fetched history; streaming starts after this."""
        if generation != self._generation or self.loaded:
            return  # a newer pick replaced these runs, or another callback got here first
        prefetch = self._prefetch or {}
        started = time.perf_counter()
        for run_id, view in self.views.items():
            try:
                fetched = prefetch[run_id].result()
                view.apply(fetched)
                self.scalars.load(run_id, fetched.scalars or {}, fetched.marks.names)
            except QueryError as exc:
                self.message.object = f'<div class="lvl-bad">cannot load {run_id}: {exc}</div>'
        self._prefetch = None
        self.loaded = True
        log.debug("history of %d runs applied in %.3f s", len(self.views), time.perf_counter() - started)
        self._fit_sharpe()
        self.refresh_tables(force=True)

    def _fit_sharpe(self) -> None:
        """Fit the Sharpe plot to the bulk of what is shown (refitted as rows stream in)."""
        fit = robust_range(
            [np.asarray(v.sources.episodes.data["sharpe_smooth"], dtype=float) for v in self.views.values()],
            include=(0.0, 1.0),
        )
        fit_range(cast(Range1d, self._sharpe.y_range), fit)

    # -- zoom: re-query downsampled runs at a finer grain --------------------------------
    def check_zoom(self) -> None:
        """When the episode x range has settled (same on two ticks) on a new window, refine."""
        if self.axis.value != "episode":
            return  # refined windows are in episodes
        rng = self._ep_range
        window = (rng.start, rng.end)
        settled, self._last_range = window == self._last_range, window
        if not settled or window == self._refined or None in window:
            return
        if not any(v.downsampled for v in self.views.values()):
            return
        lo, hi = float(window[0]), float(window[1])
        extent = [np.asarray(v.sources.episodes.data["episode"], dtype=float) for v in self.views.values()]
        extent = [e for e in extent if len(e)]
        if not extent:
            return
        full_lo, full_hi = min(e.min() for e in extent), max(e.max() for e in extent)
        if hi - lo >= ZOOMED * (full_hi - full_lo):
            return  # the auto range following new rows, not a zoom
        self._refined = window
        runs = [v.sources.run_id for v in self.views.values() if v.downsampled]
        self._zoom = (lo, hi, self.ctx.submit(self.ctx.fetch_windows, runs, lo, hi))

    def apply_zoom(self) -> None:
        if self._zoom is None or not self._zoom[2].done():
            return
        (lo, hi, future), self._zoom = self._zoom, None
        try:
            windows = future.result()
        except QueryError:
            return
        for run_id, fine in windows.items():
            view = self.views.get(run_id)
            if view is not None:
                fine["sid"] = view.marks.sids(fine.pop("stream"))
                shown = view.sources.episodes.data
                view.sources.episodes.data = merge_window(shown, fine, lo, hi, EPISODE_SOURCE)

    # -- updating (periodic callback, on the document's thread) -------------------------
    def tick(self) -> None:
        self.system.tick()
        if not self.loaded:
            if self._prefetch is not None and all(f.done() for f in self._prefetch.values()):
                self.load(self._generation)
            return  # rows wait in the buffer; those the history already holds are skipped later
        self.apply_zoom()
        self.check_zoom()
        items, lost = self.buffer.drain()
        if lost:
            self.rebuild()
            return
        chunks: dict[tuple[str, RecordKind], list] = {}
        refresh = False
        for rows in items:
            kind = rows.section.kind
            if kind is RecordKind.SYSTEM:
                self.system.on_rows(rows.run_id, rows.section.cols, rows.stream)
                continue
            if kind in (RecordKind.RUN, RecordKind.END, RecordKind.ALERT):
                refresh = True
                continue
            if kind is RecordKind.SCALARS:
                self.scalars.stream(rows.run_id, rows.section, rows.stream)
                continue
            view = self.views.get(rows.run_id)
            if view is None or kind not in (RecordKind.EPISODE, RecordKind.MODEL):
                continue
            cols = view.new_rows(kind, rows.stream, rows.section.cols)
            if cols is not None:
                chunks.setdefault((rows.run_id, kind), []).append(cols)
        episodes = False
        for (run_id, kind), parts in chunks.items():
            view = self.views[run_id]
            if kind is RecordKind.EPISODE:
                new: dict[str, Any] = concat(parts, EPISODE_SOURCE)
                view.kpi.update(new["episode"], new["objective"], new["sharpe"])
                view.sources.episodes.stream(new, rollover=ROLLOVER)
                episodes = True
            else:
                model: dict[str, Any] = concat(parts, MODEL_SOURCE)
                view.sources.model.stream(model, rollover=ROLLOVER)
        if episodes:
            self._fit_sharpe()
        if chunks:
            self.update_kpis()
        self.refresh_tables(force=refresh)

    def apply_axis(self) -> None:
        """Redraw every episode plot against the chosen x (episode, env step, wall time)."""
        if self._figs:
            set_episode_axis(self._figs, EPISODE_AXES[self.axis.value], self.axis.value)

    def update_kpis(self) -> None:
        if not self.views:
            self.kpis.object = '<div class="td-muted">No runs yet: start a trainer (traindash demo).</div>'
            return
        view = next(iter(self.views.values()))
        run_id = view.sources.run_id
        self.kpis.object = cards_html(
            cards(view.kpi, self.status.get(run_id)), self.theme, view.sources.label
        )

    def refresh_tables(self, force: bool = False) -> None:
        """Runs, trainer table and alerts, fetched on a worker so no tick waits on the collector."""
        if self._tables is not None:
            if self._tables.done():
                self.apply_tables(self._tables)
                self._tables = None
            return
        now = time.monotonic()
        if not force and now - self._table_at < max(TABLE_REFRESH_S, self.ctx.config.update_interval / 1000):
            return
        self._table_at = now
        self._tables = self.ctx.submit(self.ctx.fetch_tables)

    def apply_tables(self, future: Future) -> None:
        try:
            runs, alerts = future.result()
        except QueryError as exc:
            self.message.object = f'<div class="lvl-bad">collector not answering: {exc}</div>'
            return
        self.apply_runs(runs)
        self._render_fleet()
        self.alerts.object = alerts_html(alerts)
        self.update_kpis()

    def _render_fleet(self) -> None:
        picked = set(self.picker.value)
        runs = [r for r in self.runs if r["run_id"] in picked] or self.runs
        self.trainers.object = fleet_html(runs, open_streams=self.show_streams.value)

    def close(self) -> None:
        self.closed = True
        if self.callback is not None:
            self.callback.stop()
        self.ctx.feed.unregister(self.buffer)
        self.client.close()


def live_page(ctx: AppContext) -> pn.Column:
    session = LiveSession(ctx, ctx.session_theme())
    return session.layout()

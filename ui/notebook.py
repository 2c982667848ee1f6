"""The live dashboard of runs in a Jupyter cell (Panel's notebook support).

``live_view()`` draws the guide's plots for the picked runs from their history, then keeps
streaming the rows the collector commits, through the same rows socket as the dashboard::

    import panel as pn
    from traindash.ui.notebook import live_view
    pn.extension()
    live_view(["my-run-id"])      # the last expression of a cell renders it
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import panel as pn

from traindash.config import UIConfig
from traindash.query import QueryClient
from traindash.reports import runs_sql
from traindash.ui.feed import RowsFeed
from traindash.ui.figures import PLOTS, RunSources, live_figures
from traindash.ui.history import fetch_history
from traindash.ui.series import EPISODE_ROLLING, MODEL_ROLLING, Roller, episode_rows, model_rows
from traindash.ui.streams import SeqMarks
from traindash.ui.themes import get_theme
from traindash.wire import RecordKind

ROLLOVER = 50_000
PERIOD_MS = 500


class LiveView:
    """Figures of some runs, fed from their history and then from the collector's rows."""

    def __init__(
        self,
        run_ids: Sequence[str] | None = None,
        *,
        query: str | None = None,
        rows: str | None = None,
        theme: str | None = None,
        period_ms: int = PERIOD_MS,
    ) -> None:
        flags = {k: v for k, v in (("query", query), ("rows", rows), ("theme", theme)) if v}
        cfg = UIConfig.resolve(flags)
        self.theme = get_theme(cfg.theme)
        # Subscribed before the history is read, so no row falls between the two; the rows
        # both hold are dropped per (kind, stream) by each run's marks.
        self.streamed = 0
        self.feed = RowsFeed(cfg.endpoints.rows)
        self.buffer = self.feed.register()
        self.feed.start()
        try:
            with QueryClient(cfg.endpoints.query, timeout=10.0) as client:
                if not run_ids:
                    run_ids = [r["run_id"] for r in client.query(runs_sql()).to_pylist()[:1]]
                self.sources: dict[str, RunSources] = {}
                self.rollers: dict[str, tuple[Roller, Roller]] = {}
                self.marks: dict[str, SeqMarks] = {}
                for i, run_id in enumerate(run_ids):
                    src = RunSources.new(run_id, run_id, self.theme.palette[i % len(self.theme.palette)])
                    history = fetch_history(client, run_id)
                    src.episodes.data = dict(history.episodes)
                    src.model.data = dict(history.model)
                    ep_roll, mo_roll = Roller(EPISODE_ROLLING), Roller(MODEL_ROLLING)
                    ep_roll.seed(history.tails)
                    mo_roll.seed(history.tails)
                    self.sources[run_id], self.rollers[run_id] = src, (ep_roll, mo_roll)
                    self.marks[run_id] = history.marks
        except BaseException:
            self.feed.stop()
            raise
        figs = live_figures(self.theme, list(self.sources.values()))
        self.panel = pn.Column(
            pn.pane.Markdown(f"**traindash** live: {', '.join(self.sources)}"),
            pn.GridBox(*(pn.pane.Bokeh(figs[key]) for key in PLOTS if key in figs), ncols=2),
        )
        self.callback = pn.state.add_periodic_callback(self._tick, period=period_ms)

    def _tick(self) -> None:
        self.poll()

    def poll(self) -> int:
        """Stream what the collector committed since the last call; returns rows streamed."""
        items, _lost = self.buffer.drain()
        n = 0
        for rows in items:
            src = self.sources.get(rows.run_id)
            if src is None:
                continue
            kind = rows.section.kind
            if kind not in (RecordKind.EPISODE, RecordKind.MODEL):
                continue
            ep_roll, mo_roll = self.rollers[rows.run_id]
            marks = self.marks[rows.run_id]
            cols = marks.take(kind, rows.stream, rows.section.cols)
            if cols is None:
                continue
            sid = marks.sid(rows.stream)
            if kind is RecordKind.EPISODE:
                # bokeh's stubs take a dict of a union, and dict is invariant
                src.episodes.stream(episode_rows(cols, ep_roll, sid=sid), rollover=ROLLOVER)  # type: ignore[arg-type]
            else:
                src.model.stream(model_rows(cols, mo_roll, sid), rollover=ROLLOVER)  # type: ignore[arg-type]
            n += len(cols["seq"])
        self.streamed += n
        return n

    def stop(self) -> None:
        self.callback.stop()
        self.feed.stop()

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        return self.panel._repr_mimebundle_(include, exclude)


def live_view(run_ids: Sequence[str] | None = None, **kwargs: Any) -> LiveView:
    """A :class:`LiveView` of ``run_ids`` (the newest run by default); display it in a cell."""
    return LiveView(run_ids, **kwargs)

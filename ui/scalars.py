"""The live page's scalars section: one chart per group of logged names, streamed.

A group is the part of a name before its first ``/`` (``losses/value_loss`` is in
``losses``), as TensorBoard groups its charts. Each (run, name) has a data source of its own,
seeded from the downsampled history (``history.fetch_scalars``) and then streamed from the
committed ``scalars`` sections of the shared feed. Charts and lines for names first seen
live are added as they arrive. Everything here runs on the document's thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource
from bokeh.palettes import Category10_10

from traindash.ui.figures import RunSources, scalar_figure
from traindash.ui.streams import SeqMarks, Stream
from traindash.ui.themes import Theme
from traindash.wire import RecordKind, Section

ROLLOVER = 20_000
DASHES = ("solid", "dashed", "dotted", "dotdash")


def group_of(name: str) -> str:
    """``losses/value_loss`` -> ``losses``; a name without ``/`` is in the group ``""``."""
    return name.split("/", 1)[0] if "/" in name else ""


class ScalarsPanel:
    """Charts of the picked runs' scalars; :attr:`grid` is the section's Panel object."""

    def __init__(self, theme: Theme) -> None:
        self.theme = theme
        self.grid = pn.GridBox(ncols=2, sizing_mode="stretch_width")
        self.runs: dict[str, tuple[int, RunSources]] = {}
        self.figs: dict[str, Any] = {}
        self.sources: dict[tuple[str, str], ColumnDataSource] = {}
        self.colors: dict[str, str] = {}
        self.marks: dict[str, SeqMarks] = {}  # per run: the newest seq shown of each stream
        self.members: dict[str, list[tuple[str, str]]] = {}

    def reset(self, runs: list[RunSources]) -> None:
        """Start over for a new pick of runs (their history follows through :meth:`load`)."""
        self.runs = {r.run_id: (i, r) for i, r in enumerate(runs)}
        self.figs, self.sources, self.marks = {}, {}, {r.run_id: SeqMarks() for r in runs}
        self.members = {}
        self.grid.objects = []

    def load(
        self, run_id: str, history: dict[str, dict[str, np.ndarray]], streams: Sequence[Stream] = (None,)
    ) -> None:
        """Show a run's fetched scalars; streamed records up to the newest seq of their stream
        are skipped. ``streams``: the stream of each ``sid`` in the history (0: None)."""
        dirty = set[str]()
        marks = self.marks.setdefault(run_id, SeqMarks())
        for name in sorted(history):
            cols = history[name]
            self._source(run_id, name, dirty).data = {k: cols[k] for k in ("seq", "step", "value")}
            sid = cols.get("sid")
            marks.seed(RecordKind.SCALARS, cols["seq"], None if sid is None else [streams[i] for i in sid])
        self._redraw(dirty)

    def stream(self, run_id: str, section: Section, stream: Stream = None) -> None:
        """Append a committed ``scalars`` section of a shown run, written by ``stream``."""
        if run_id not in self.runs:
            return
        seq = np.asarray(section.cols["seq"], dtype=np.int64)
        keep = self.marks.setdefault(run_id, SeqMarks()).fresh(RecordKind.SCALARS, stream, seq)
        if not keep.any():
            return
        step = np.asarray(section.cols["step"], dtype=np.float64)[keep]
        dirty: set[str] = set()
        for i, name in enumerate(section.names):
            values = np.asarray(section.cols[f"v{i}"], dtype=np.float64)[keep]
            self._source(run_id, name, dirty).stream(
                {"seq": seq[keep], "step": step, "value": values}, rollover=ROLLOVER
            )
        self._redraw(dirty)

    def _source(self, run_id: str, name: str, dirty: set[str]) -> ColumnDataSource:
        key = (run_id, name)
        source = self.sources.get(key)
        if source is None:
            source = self.sources[key] = ColumnDataSource(
                {"seq": [], "step": [], "value": []}, name=f"scalar:{run_id}:{name}"
            )
            group = group_of(name)
            self.members.setdefault(group, []).append(key)
            dirty.add(group)
        return source

    def _redraw(self, groups: set[str]) -> None:
        """New charts for groups with new names (a chart already shown does not take new
        lines reliably), then the grid once; the sources, and their rows, are kept."""
        if not groups:
            return
        for group in groups:
            fig = scalar_figure(self.theme, group)
            for run_id, name in self.members[group]:
                index, run = self.runs[run_id]
                color = self.colors.setdefault(name, Category10_10[len(self.colors) % len(Category10_10)])
                fig.line(
                    "step",
                    "value",
                    source=self.sources[(run_id, name)],
                    color=color,
                    line_width=2,
                    line_dash=DASHES[index % len(DASHES)],
                    legend_label=name if len(self.runs) == 1 else f"{name} · {run.label}",
                    name=name,
                )
            fig.legend.location = "top_left"
            fig.legend.label_text_font_size = "10px"
            fig.legend.background_fill_alpha = 0.4
            fig.legend.label_text_color = self.theme.fg
            fig.legend.background_fill_color = self.theme.card_bg
            self.figs[group] = fig
        self.grid.objects = [
            pn.pane.Bokeh(self.figs[g], sizing_mode="stretch_width") for g in sorted(self.figs)
        ]

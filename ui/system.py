"""The live page's system section: CPU, RSS, GPU utilisation and GPU memory of the picked runs.

On a (re)pick the newest samples of each run come from the ``system`` table on a worker;
new samples then stream in from the shared rows feed like episodes do. One line per run on
the process plots, one per run and GPU on the GPU plots (made as GPUs appear). Sources and
figures are named ``proc:<run_id>``, ``gpu:<run_id>:<index>`` and ``system:<plot>`` for
the browser tests. Also the trainer table's GPU column (:func:`add_gpu_util`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import numpy as np
import panel as pn
from bokeh.models import ColumnDataSource, DataRange1d, NumeralTickFormatter, Range1d
from bokeh.models.annotations import Legend
from bokeh.plotting import figure

from traindash.query import QueryClient, QueryError, sql_literal
from traindash.ui.figures import TOOLS, style
from traindash.ui.render import css
from traindash.ui.streams import SeqMarks, Stream
from traindash.ui.themes import Theme
from traindash.wire import RecordKind

if TYPE_CHECKING:
    from traindash.ui.context import AppContext

MAX_ROWS = 20_000  # newest system rows per run on a pick (4,000 samples of a host with 4 GPUs)
ROLLOVER = 50_000
PROCESS_COLUMNS = ("seq", "t", "cpu_percent", "rss_bytes")
GPU_COLUMNS = ("seq", "t", "gpu_util_percent", "gpu_mem_used_bytes")
SYSTEM_PLOTS = {
    "cpu": "Process CPU (%, 100 = one core)",
    "rss": "Process memory (RSS)",
    "gpu_util": "GPU utilisation (%)",
    "gpu_mem": "GPU memory used",
}
GPU_DASHES = ("solid", "dashed", "dotted", "dotdash", "dashdot")


# seq order for a run's only writer; rows of several streams (a seq space each) in time order
ORDER = "CASE WHEN stream IS NULL THEN seq END{0}, ts{0}, stream{0}, seq{0}"


def history_sql(run_id: str, max_rows: int = MAX_ROWS) -> str:
    """The newest ``max_rows`` system rows of a run, oldest first, ``t`` in ms for Bokeh."""
    return f"""SELECT seq, stream, epoch_us(ts) / 1e3 AS t, gpu_index::DOUBLE AS gpu_index, cpu_percent,
       rss_bytes::DOUBLE AS rss_bytes, gpu_util_percent, gpu_mem_used_bytes::DOUBLE AS gpu_mem_used_bytes
FROM (SELECT * FROM system WHERE run_id = {sql_literal(run_id)} ORDER BY {ORDER.format(" DESC")}
  LIMIT {int(max_rows)})
ORDER BY {ORDER.format("")}"""


def gpu_util_sql() -> str:
    """Per run, the GPU utilisation of its newest sample: the mean over the GPUs its process
    holds memory on, or over every GPU of the host when it holds none (or NVML cannot tell)."""
    return """WITH last AS (SELECT run_id, max(ts) AS ts FROM system WHERE gpu_index IS NOT NULL GROUP BY ALL)
SELECT run_id, coalesce(avg(gpu_util_percent) FILTER (WHERE gpu_proc_mem_bytes > 0),
                        avg(gpu_util_percent)) AS gpu_util_percent
FROM system JOIN last USING (run_id, ts) WHERE gpu_index IS NOT NULL GROUP BY ALL"""


def add_gpu_util(client: QueryClient, runs: list[dict[str, Any]], timeout: float) -> None:
    """Set ``gpu_util_percent`` on each run of the trainer table (None without GPU samples)."""
    try:
        table = client.query(gpu_util_sql(), timeout=timeout).to_pylist()
    except QueryError:
        table = []  # an older collector without the system table
    util = {r["run_id"]: r["gpu_util_percent"] for r in table}
    for run in runs:
        run["gpu_util_percent"] = util.get(run["run_id"])


def split(cols: Mapping[str, Any]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """System rows (a streamed section or fetched history) as the process source's columns
    and each GPU's: rows without a ``gpu_index`` are the process and host rows."""
    n = len(cols["seq"])

    def col(name: str, scale: float = 1.0) -> np.ndarray:
        values = cols.get(name)
        if values is None:
            return np.full(n, np.nan)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            out = values.astype(np.float64)
            return out * scale if scale != 1.0 else out
        out = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
        return out * scale if scale != 1.0 else out

    seq = np.asarray(cols["seq"], dtype=np.int64)
    t = col("t") if "t" in cols else col("ts", 1e3)
    gpu = col("gpu_index")
    proc = np.isnan(gpu)
    process: dict[str, Any] = {"seq": seq[proc], "t": t[proc]}
    for name in PROCESS_COLUMNS[2:]:
        process[name] = col(name)[proc]
    gpus: dict[int, dict[str, Any]] = {}
    for index in np.unique(gpu[~proc]):
        at = gpu == index
        gpus[int(index)] = {"seq": seq[at], "t": t[at]} | {name: col(name)[at] for name in GPU_COLUMNS[2:]}
    return process, gpus


def _empty(columns: Sequence[str]) -> dict[str, np.ndarray]:
    return {c: np.empty(0, dtype=np.int64 if c == "seq" else np.float64) for c in columns}


def system_figures(theme: Theme) -> dict[str, figure]:
    """The four empty plots, sharing a wall-clock x axis."""
    x = DataRange1d(only_visible=True)
    figs = {}
    for key, title in SYSTEM_PLOTS.items():
        fig = figure(
            name=f"system:{key}",
            title=title,
            x_range=x,
            x_axis_type="datetime",
            tools=TOOLS,
            height=220,
            sizing_mode="stretch_width",
            min_width=300,
        )
        figs[key] = style(fig, theme)
    figs["gpu_util"].y_range = Range1d(start=0, end=100)
    for key in ("rss", "gpu_mem"):
        figs[key].yaxis.formatter = NumeralTickFormatter(format="0.0 b")
    return figs


class RunSystem:
    """One picked run's sources and the newest seq shown of each of its streams."""

    def __init__(self, run_id: str, label: str, color: str) -> None:
        self.run_id, self.label, self.color = run_id, label, color
        self.process = ColumnDataSource(_empty(PROCESS_COLUMNS), name=f"proc:{run_id}")
        self.gpus: dict[int, ColumnDataSource] = {}
        self.marks = SeqMarks()
        self.loaded = False
        self.pending: list[tuple[Mapping[str, Any], Stream]] = []


class SystemSection:
    """The system plots of one live-page session; every method runs on the document's thread."""

    def __init__(self, ctx: AppContext, theme: Theme) -> None:
        self.ctx, self.theme = ctx, theme
        self.runs: dict[str, RunSystem] = {}
        self.figs: dict[str, figure] = {}
        self._history: Future | None = None
        self.grid = pn.GridBox(ncols=2, sizing_mode="stretch_width")
        note = (
            '<div class="td-h">System</div><div class="td-muted">each run\'s process and host, '
            "sampled every 10 s by default; GPU plots fill when NVML reports NVIDIA GPUs</div>"
        )
        self.panel = pn.Column(
            pn.pane.HTML(note, stylesheets=[css(theme)], sizing_mode="stretch_width"),
            self.grid,
            sizing_mode="stretch_width",
            name="system",
        )

    def rebuild(self, runs: Sequence[tuple[str, str, str]]) -> None:
        """New sources and plots for ``(run_id, label, color)``; history follows on a worker."""
        self.runs = {run_id: RunSystem(run_id, label, color) for run_id, label, color in runs}
        self.figs = system_figures(self.theme)
        items: list[Any] = []
        for run in self.runs.values():
            cpu = self.figs["cpu"].line("t", "cpu_percent", source=run.process, color=run.color, line_width=2)
            self.figs["rss"].line("t", "rss_bytes", source=run.process, color=run.color, line_width=2)
            items.append((run.label, [cpu]))
        if items:
            self.figs["cpu"].add_layout(
                Legend(
                    items=items,
                    location="top_left",
                    background_fill_alpha=0.4,
                    background_fill_color=self.theme.card_bg,
                    label_text_color=self.theme.fg,
                    label_text_font_size="10px",
                    border_line_alpha=0,
                    spacing=0,
                    padding=4,  # type: ignore[arg-type]
                )
            )
        self.grid.objects = [pn.pane.Bokeh(f, sizing_mode="stretch_width") for f in self.figs.values()]
        ids = list(self.runs)
        self._history = self.ctx.submit(self._fetch, ids) if ids else None

    def _fetch(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        with self.ctx.client() as client:
            out = {}
            for run_id in run_ids:
                table = client.query(history_sql(run_id))
                out[run_id] = {
                    name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
                }
            return out

    def tick(self) -> None:
        """Apply fetched history once it is there (streamed rows wait for it)."""
        future = self._history
        if future is None or not future.done():
            return
        self._history = None
        try:
            fetched = future.result()
        except QueryError:
            fetched = {}  # an older collector without the system table: streaming still works
        for run_id, run in self.runs.items():
            cols = fetched.get(run_id)
            if cols is not None and len(cols["seq"]):
                streams = cols.pop("stream", None)
                run.marks.seed(RecordKind.SYSTEM, cols["seq"], None if streams is None else list(streams))
                self._show(run, cols, replace=True)
            run.loaded = True
            for part, stream in run.pending:
                self._show(run, part, stream=stream)
            run.pending.clear()

    def on_rows(self, run_id: str, cols: Mapping[str, Any], stream: Stream = None) -> None:
        """A streamed ``system`` section of a run, written by ``stream`` (None: its only writer)."""
        run = self.runs.get(run_id)
        if run is None:
            return
        if not run.loaded:
            run.pending.append((cols, stream))
        else:
            self._show(run, cols, stream=stream)

    def _show(
        self, run: RunSystem, cols: Mapping[str, Any], replace: bool = False, stream: Stream = None
    ) -> None:
        if not replace:  # fetched history is shown whole (its marks are seeded by the caller)
            new = run.marks.take(RecordKind.SYSTEM, stream, cols)
            if new is None:
                return
            cols = new
        process, gpus = split(cols)
        if len(process["seq"]):
            if replace:
                run.process.data = process
            else:
                run.process.stream(process, rollover=ROLLOVER)
        for index, part in gpus.items():
            source = run.gpus.get(index)
            if source is None:
                source = run.gpus[index] = self._add_gpu(run, index)
            if replace:
                source.data = part
            else:
                source.stream(part, rollover=ROLLOVER)

    def _add_gpu(self, run: RunSystem, index: int) -> ColumnDataSource:
        source = ColumnDataSource(_empty(GPU_COLUMNS), name=f"gpu:{run.run_id}:{index}")
        dash = GPU_DASHES[index % len(GPU_DASHES)]
        for key, column in (("gpu_util", "gpu_util_percent"), ("gpu_mem", "gpu_mem_used_bytes")):
            self.figs[key].line("t", column, source=source, color=run.color, line_width=2, line_dash=dash)
        return source

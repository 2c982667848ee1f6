"""``traindash top``: a live terminal view of the runs, for an SSH session (80x24 and up).

Committed rows arrive on the collector's rows socket (push); each run's history is read once
through the query socket. Keys: up/down pick a run, PgUp/PgDn page, q or Ctrl-C quit.
"""

from __future__ import annotations

import argparse
import threading
import time
from typing import Any, ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from traindash.cli.common import add_config, add_endpoints, file_block, flags
from traindash.cli.top_state import RunView, TopState, number, sparkline
from traindash.config import Endpoints, UIConfig
from traindash.query import QueryClient, QueryError, sql_literal
from traindash.ui.feed import RowsFeed

HELP = "live terminal view of runs, episodes/s, objective trend and alerts (q quits)"

REFRESH_S = 0.5
STATUS_EVERY_S = 5.0
QUERY_TIMEOUT = 5.0
MAX_RUNS = 500
TREND_WIDTH = 12
COLUMNS = (
    ("run", "Run", 16),
    ("state", "State", 8),
    ("ep", "Episode", 7),
    ("obj", "Objective", 9),
    ("trend", "Trend", TREND_WIDTH),
    ("rate", "Ep/s", 5),
    ("gpu", "GPU%", 4),
)

RUNS_SQL = """SELECT r.run_id, coalesce(r.name, r.run_id) AS name, r.experiment, r.status{objective}
FROM runs r WHERE coalesce(r.role, 'trainer') = 'trainer'
ORDER BY (r.status IN ('running', 'stalled')) DESC, r.started_at DESC NULLS LAST LIMIT {limit}"""

# The newest first: by seq for a run's only writer; by time for a run of several streams,
# whose seqs are per stream.
NEWEST = "CASE WHEN stream IS NULL THEN seq END DESC, ts DESC, stream DESC, seq DESC"
EPISODES_SQL = """SELECT run_id, count(*) AS episodes, max(episode) AS episode, max({col}) AS best,
       list({col} ORDER BY rn) FILTER (WHERE rn <= {points}) AS trend
FROM (SELECT run_id, episode, {col}, row_number() OVER (PARTITION BY run_id ORDER BY {newest}) AS rn
      FROM episodes WHERE run_id IN ({ids}))
GROUP BY run_id"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_endpoints(p, "rows", "query")
    add_config(p)


def run(args: argparse.Namespace) -> int:
    endpoints = UIConfig.resolve(flags(args), None, file_block(args)).endpoints
    TopApp(endpoints).run()
    return 0


def load_runs(client: QueryClient) -> list[dict[str, Any]]:
    """Each trainer run with its episode count, last episode, best and recent objective values."""
    run_cols = set(client.query("SELECT * FROM runs LIMIT 0", timeout=QUERY_TIMEOUT).column_names)
    episode_cols = set(client.query("SELECT * FROM episodes LIMIT 0", timeout=QUERY_TIMEOUT).column_names)
    objective = ", coalesce(r.objective, 'profit') AS objective" if "objective" in run_cols else ""
    runs = client.query(
        RUNS_SQL.format(objective=objective, limit=MAX_RUNS), timeout=QUERY_TIMEOUT
    ).to_pylist()
    by_objective: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        col = r.get("objective") or "profit"
        by_objective.setdefault(col if col in episode_cols else "profit", []).append(r)
    for col, group in by_objective.items():
        ids = ", ".join(sql_literal(r["run_id"]) for r in group)
        sql = EPISODES_SQL.format(col=f'"{col}"', points=60, ids=ids, newest=NEWEST)
        stats = {s["run_id"]: s for s in client.query(sql, timeout=QUERY_TIMEOUT).to_pylist()}
        for r in group:
            s = stats.get(r["run_id"], {})
            r.update(
                episodes=s.get("episodes", 0),
                episode=s.get("episode"),
                best=s.get("best"),
                trend=list(reversed(s.get("trend") or [])),
                objective=col,
            )
    return runs


def load_statuses(client: QueryClient) -> dict[str, str]:
    rows = client.query("SELECT run_id, status FROM runs", timeout=QUERY_TIMEOUT).to_pylist()
    return {r["run_id"]: r["status"] for r in rows}


class TopApp(App[int]):
    """The terminal view: a table of runs, the picked run's detail, the latest alerts."""

    CSS = """
    #header { height: 1; background: $primary-background; }
    DataTable { height: 1fr; }
    #detail { height: 4; border-top: solid $primary; }
    #alerts { height: 4; border-top: solid $warning; }
    """
    BINDINGS: ClassVar = [
        Binding("q", "quit_top", "Quit"),
        Binding("ctrl+c", "quit_top", "Quit", priority=True, show=False),
    ]

    def __init__(self, endpoints: Endpoints) -> None:
        super().__init__()
        self.endpoints = endpoints
        self.state = TopState()
        self.feed = RowsFeed(endpoints.rows)
        self.buffer = self.feed.register()
        self.problem = ""
        self._lock = threading.Lock()
        self._loaded: list[dict[str, Any]] | None = None
        self._statuses: dict[str, str] = {}
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static("traindash top", id="header", markup=False)
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        yield table
        yield Static("", id="detail", markup=False)
        yield Static("", id="alerts", markup=False)

    def on_mount(self) -> None:
        self.feed.start()
        threading.Thread(target=self._reader, name="traindash-top-query", daemon=True).start()
        self.set_interval(REFRESH_S, self.refresh_view)
        self.refresh_view()

    def _reader(self) -> None:
        """History once (again after a failure), then the runs' states every few seconds."""
        loaded = False
        with QueryClient(self.endpoints.query, timeout=QUERY_TIMEOUT) as client:
            while not self._stop.is_set():
                try:
                    if not loaded:
                        runs = load_runs(client)
                        with self._lock:
                            self._loaded = runs
                        loaded = True
                    else:
                        statuses = load_statuses(client)
                        with self._lock:
                            self._statuses = statuses
                    self.problem = ""
                except QueryError as exc:
                    self.problem = str(exc).splitlines()[0]
                    client.close()
                self._stop.wait(STATUS_EVERY_S if loaded else 1.0)

    def refresh_view(self) -> None:
        with self._lock:
            loaded, self._loaded = self._loaded, None
            statuses, self._statuses = self._statuses, {}
        if loaded is not None:
            self.state.load_runs(loaded)
        if statuses:
            self.state.set_statuses(statuses)
        items, _lost = self.buffer.drain()
        now = time.time()
        for rows in items:
            self.state.apply(rows, now)
        self._draw(now)

    def _draw(self, now: float) -> None:
        table = self.query_one(DataTable)
        for view in self.state.ordered():
            cells = self._cells(view, now)
            if view.run_id in table.rows:
                for (key, _, _), value in zip(COLUMNS, cells, strict=True):
                    table.update_cell(view.run_id, key, value)
            else:
                table.add_row(*cells, key=view.run_id)
        runs = self.state.runs
        live = sum(v.status == "running" for v in runs.values())
        note = f"  ! {self.problem}" if self.problem else ""
        self.query_one("#header", Static).update(
            f"traindash top  {len(runs)} runs, {live} running  [q] quit [↑↓] pick [PgUp/PgDn] page{note}"
        )
        self.query_one("#detail", Static).update(self._detail(table, now))
        lines = [
            f"{time.strftime('%H:%M:%S', time.localtime(a.ts))} {a.level.upper():8} "
            f"{runs[a.run_id].name if a.run_id in runs else a.run_id}: {a.title}"
            for a in list(self.state.alerts)[-3:]
        ]
        self.query_one("#alerts", Static).update("\n".join(lines) or "no alerts")

    def _cells(self, view: RunView, now: float) -> tuple[str, ...]:
        return (
            view.name,
            view.status,
            "-" if view.episode is None else str(view.episode),
            number(view.last),
            sparkline(list(view.trend), TREND_WIDTH),
            f"{view.rate(now):.1f}",
            "-" if view.gpu_util is None else f"{view.gpu_util:.0f}",
        )

    def _detail(self, table: DataTable, now: float) -> str:
        if not table.row_count:
            return "waiting for runs..."
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        view = self.state.runs.get(str(key))
        if view is None:
            return ""
        return (
            f"{view.name} ({view.experiment}) {view.status}, {view.episodes} episodes, "
            f"{view.rate(now):.1f}/s\n{view.objective}: last {number(view.last)}, best {number(view.best)}\n"
            f"{sparkline(list(view.trend), 60)}"
        )

    def action_quit_top(self) -> None:
        self.exit(0)

    def on_unmount(self) -> None:
        self._stop.set()
        self.feed.stop()

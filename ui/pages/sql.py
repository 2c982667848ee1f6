"""The SQL page: a read-only query box over the collector's query socket, CSV download."""

from __future__ import annotations

import io
import time

import panel as pn
import pyarrow as pa

from traindash.output import csv_text
from traindash.query import QueryError
from traindash.ui.context import AppContext, on_destroy, shell
from traindash.ui.render import css, table_html

DEFAULT_SQL = "SELECT * FROM leaderboard ORDER BY best_profit DESC NULLS LAST"
MAX_ROWS = 100_000
SHOWN_ROWS = 500


def sql_page(ctx: AppContext) -> pn.Column:
    theme = ctx.session_theme()
    client = ctx.client(lane="console")
    on_destroy(client.close)
    style = [css(theme)]
    box = pn.widgets.TextAreaInput(
        name="Read-only SQL (one SELECT; tables: runs, episodes, model_metrics, alerts, system, "
        "view leaderboard)",
        value=DEFAULT_SQL,
        height=120,
        sizing_mode="stretch_width",
    )
    run = pn.widgets.Button(name="Run query", button_type="primary", width=140)
    status = pn.pane.HTML("", stylesheets=style, name="sql-status")
    result = pn.pane.HTML("", stylesheets=style, sizing_mode="stretch_width", name="sql-result")
    last: dict[str, pa.Table] = {}

    def download() -> io.StringIO:
        table = last.get("table")
        return io.StringIO(csv_text(table) if table is not None else "")

    dl = pn.widgets.FileDownload(
        callback=download,
        filename="traindash_query.csv",
        label="Download CSV",
        button_type="default",
        width=160,
    )

    def execute(_event: object = None) -> None:
        started = time.perf_counter()
        try:
            table = client.query(box.value or "", max_rows=MAX_ROWS)
        except QueryError as exc:
            status.object = f'<span class="lvl-bad">error: {exc}</span>'
            result.object = ""
            return
        last["table"] = table
        ms = (time.perf_counter() - started) * 1000
        shown = table.slice(0, SHOWN_ROWS).to_pylist()
        note = f" (showing the first {SHOWN_ROWS})" if table.num_rows > SHOWN_ROWS else ""
        status.object = (
            f'<span class="td-muted sql-ok">{table.num_rows} row'
            f"{'s' if table.num_rows != 1 else ''} in {ms:.0f} ms{note}</span>"
        )
        result.object = table_html(table.column_names, [list(r.values()) for r in shown], "no rows")

    run.on_click(execute)
    execute()
    return shell(ctx, theme, "/sql", box, pn.Row(run, dl, status), result)

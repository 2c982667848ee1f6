"""The fleet table: runs, each with its streams (the processes writing it), and a health grid.

Pure HTML builders. A run with streams shows one row, then a collapsed block that opens to
its streams (worker, host, pid, state, episodes/s, episodes, last seen) with a count per
state in its summary, and a grid of one small cell per stream coloured by state, so a run
with hundreds of EnvRunners stays one screen tall until someone looks inside.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from typing import Any

from traindash.reports import LIVE_STATUSES, RATE_WINDOW_S
from traindash.ui.render import ago, gpu_cell, table_html

STATE_CLASS = {"running": "lvl-good", "finished": "lvl-none", "stalled": "lvl-warn"}
STATE_ORDER = ("running", "stalled", "lost", "failed", "finished")
FLEET_CSS = """
.td-grid { display: flex; flex-wrap: wrap; gap: 2px; margin: 4px 0; max-width: 640px; }
.td-grid span { width: 10px; height: 10px; border-radius: 2px; background: currentColor; }
table.td tr.td-streams > td { white-space: normal; max-width: none; padding-left: 24px; }
.td-streams summary { cursor: pointer; }
"""


def add_streams(runs: list[dict[str, Any]], streams: Sequence[dict[str, Any]]) -> None:
    """Attach to each run dict its streams (``run["streams"]``), in the order given."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for s in streams:
        by_run.setdefault(s["run_id"], []).append(s)
    for r in runs:
        r["streams"] = by_run.get(r["run_id"], [])


def _state_class(status: str) -> str:
    return STATE_CLASS.get(status, "lvl-bad")


def _rate(r: dict[str, Any]) -> float:
    return (r.get("recent") or 0) / RATE_WINDOW_S if r.get("status") in LIVE_STATUSES else 0.0


def state_counts(streams: Sequence[dict[str, Any]]) -> str:
    """``"62 running · 2 lost"``: streams counted by state, live states first."""
    counts = Counter(str(s.get("status") or "") for s in streams)
    order = [k for k in STATE_ORDER if k in counts] + sorted(k for k in counts if k not in STATE_ORDER)
    return " · ".join(f"{counts[k]} {k}" for k in order)


def health_grid(streams: Sequence[dict[str, Any]]) -> str:
    """One cell per stream, coloured by state; its title names the worker, host and state."""
    parts = []
    for s in streams:
        status = str(s.get("status") or "")
        title = html.escape(f"{s.get('worker') or s.get('stream')} @ {s.get('host') or '?'}: {status}")
        parts.append(f'<span class="{_state_class(status)}" title="{title}"></span>')
    return f'<div class="td-grid">{"".join(parts)}</div>'


def streams_html(streams: Sequence[dict[str, Any]], now: float | None = None) -> str:
    rows, classes = [], []
    for s in streams:
        status = str(s.get("status") or "")
        rows.append(
            [
                s.get("worker") or s.get("stream"),
                s.get("host"),
                s.get("pid"),
                status,
                f"{_rate(s):.1f}",
                s.get("episodes"),
                ago(s.get("last_seen"), now),
            ]
        )
        classes.append(["", "", "", _state_class(status), "", "", ""])
    return table_html(
        ["stream", "host", "pid", "state", "episodes/s", "episodes", "last seen"], rows, "", classes
    )


def fleet_html(runs: Sequence[dict[str, Any]], now: float | None = None, open_streams: bool = False) -> str:
    """The fleet table: a row per run (host, pid, state, episodes/s, environment steps/s from
    the episodes' env steps, episodes, GPU utilisation, last seen), its streams folded below."""
    head = ["run", "host", "pid", "state", "episodes/s", "SPS", "episodes", "GPU", "last seen"]
    body = []
    for r in runs:
        status = str(r.get("status") or "")
        cells = [
            r.get("name"),
            r.get("host"),
            r.get("pid"),
            status,
            f"{_rate(r):.1f}",
            "—" if r.get("sps") is None else f"{r['sps']:,.0f}",
            r.get("episodes"),
            gpu_cell(r.get("gpu_util_percent")),
            ago(r.get("last_seen"), now),
        ]
        classes = {3: _state_class(status), 7: "gpu"}
        body.append(
            "<tr>"
            + "".join(f'<td class="{classes.get(i, "")}">{_esc(v)}</td>' for i, v in enumerate(cells))
            + "</tr>"
        )
        streams = r.get("streams") or []
        if streams:
            summary = html.escape(f"{len(streams)} streams: {state_counts(streams)}")
            state = " open" if open_streams else ""
            folded = f"<details{state}><summary>{summary}</summary>{streams_html(streams, now)}</details>"
            body.append(
                f'<tr class="td-streams"><td colspan="{len(head)}">{health_grid(streams)}{folded}</td></tr>'
            )
    if not body:
        return '<div class="td-muted">no trainer has connected yet</div>'
    th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    return f'<table class="td td-fleet"><thead><tr>{th}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _esc(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return html.escape(str(v))

"""Pure HTML/CSS for the parts that are not plots: KPI cards, tables, the header.

Panel renders panes in shadow DOM, so each HTML pane gets its stylesheet passed in
(``stylesheets=[css(theme)]``) instead of relying on page-wide CSS.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence
from typing import Any

from traindash.ui.kpi import Card
from traindash.ui.themes import Theme


def css(theme: Theme) -> str:
    glow = f"text-shadow: 0 0 6px {theme.accent}66;" if theme.glow else ""
    return f"""
:host {{ color: {theme.fg}; font-family: {theme.font}; }}
.td-cards {{ display: grid; grid-template-columns: repeat(6, minmax(120px, 1fr)); gap: 10px; }}
.td-card {{ background: {theme.card_bg}; border: 1px solid {theme.grid}; border-radius: 8px;
  padding: 10px 14px; border-left: 4px solid var(--lvl); }}
.td-card .lbl {{ color: {theme.muted}; font-size: 11px; text-transform: uppercase;
  letter-spacing: .06em; }}
.td-card .val {{ color: var(--lvl); font-size: 24px; font-weight: 700; margin-top: 4px; {glow} }}
.td-card .run {{ color: {theme.muted}; font-size: 10px; margin-top: 2px; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }}
.td-title {{ font-size: 20px; font-weight: 700; color: {theme.accent}; {glow} }}
.td-nav a {{ color: {theme.fg}; text-decoration: none; margin-right: 16px; font-size: 14px; }}
.td-nav a.on {{ color: {theme.accent}; border-bottom: 2px solid {theme.accent}; }}
.td-muted {{ color: {theme.muted}; font-size: 12px; }}
table.td {{ border-collapse: collapse; width: 100%; font-size: 12px; }}
table.td td.msg {{ max-width: 360px; white-space: normal; }}
table.td th {{ text-align: left; color: {theme.muted}; font-weight: 600; padding: 4px 8px;
  border-bottom: 1px solid {theme.grid}; }}
table.td td {{ padding: 4px 8px; border-bottom: 1px solid {theme.grid}; color: {theme.fg};
  white-space: nowrap; max-width: 420px; overflow: hidden; text-overflow: ellipsis; }}
.td-scroll {{ max-height: 300px; overflow-y: auto; }}
.td-h {{ font-size: 13px; font-weight: 600; color: {theme.fg}; margin: 2px 0 6px 0; }}
.lvl-good {{ color: {theme.good}; }} .lvl-warn {{ color: {theme.warn}; }}
.lvl-bad {{ color: {theme.bad}; }} .lvl-none {{ color: {theme.muted}; }}
"""


def cards_html(cards: Sequence[Card], theme: Theme, run_label: str = "") -> str:
    parts = []
    for c in cards:
        parts.append(
            f'<div class="td-card kpi-{c.key} level-{c.level}" style="--lvl: {theme.level_color(c.level)}">'
            f'<div class="lbl">{html.escape(c.label)}</div><div class="val">{html.escape(c.text)}</div>'
            f'<div class="run">{html.escape(run_label)}</div></div>'
        )
    return f'<div class="td-cards">{"".join(parts)}</div>'


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return str(v) if not math.isfinite(v) else f"{v:.6g}"
    return html.escape(str(v))


def table_html(
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    empty: str = "nothing yet",
    classes: Sequence[Sequence[str]] | None = None,
) -> str:
    if not rows:
        return f'<div class="td-muted">{html.escape(empty)}</div>'
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        cls = classes[i] if classes else [""] * len(row)
        cells = "".join(f'<td class="{k}">{_cell(v)}</td>' for v, k in zip(row, cls, strict=True))
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="td"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None or not math.isfinite(ts):
        return ""
    secs = max(0.0, (time.time() if now is None else now) - ts)
    if secs < 60:
        return f"{secs:.0f} s ago"
    if secs < 3600:
        return f"{secs / 60:.0f} min ago"
    return f"{secs / 3600:.1f} h ago"


def gpu_cell(value: Any) -> str:
    """The trainer table's GPU column: '87%', or blank without GPU samples."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return ""
    return f"{value:.0f}%"


def alerts_html(alerts: Sequence[dict[str, Any]], now: float | None = None) -> str:
    rows, classes = [], []
    for a in alerts:
        level = str(a.get("level") or "").lower()
        cls = {
            "critical": "lvl-bad",
            "error": "lvl-bad",
            "warning": "lvl-warn",
            "info": "lvl-good",
            "success": "lvl-good",
        }.get(level, "")
        rows.append([ago(a.get("ts"), now), level, a.get("title") or a.get("rule"), a.get("message")])
        classes.append(["", cls, "", "msg"])
    table = table_html(["when", "level", "alert", "message"], rows, "no alerts", classes)
    return f'<div class="td-scroll">{table}</div>'


def nav_html(active: str, theme: Theme, query: str = "") -> str:
    links = [("/", "Live"), ("/compare", "Compare"), ("/sql", "SQL")]
    items = "".join(
        f'<a class="{"on" if path == active else ""}" href="{path}{query}">{label}</a>'
        for path, label in links
    )
    return (
        f'<div style="display:flex;align-items:center;gap:28px">'
        f'<span class="td-title">traindash</span><span class="td-nav">{items}</span></div>'
    )

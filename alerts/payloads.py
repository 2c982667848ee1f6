"""Pure payload builders: Slack messages and email messages for one alert or a batch.

Colours follow the guide's level table: info green, warning yellow, critical red.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from email.message import EmailMessage
from typing import Any
from urllib.parse import quote

from traindash.alerts.rules import Alert

COLOURS = {"info": "#2eb67d", "warning": "#ecb22e", "critical": "#e01e5a"}
EMOJI = {"info": ":large_green_circle:", "warning": ":warning:", "critical": ":red_circle:"}
_RANK = {"info": 0, "warning": 1, "critical": 2}
MAX_FIELDS = 10
MAX_BATCH_LINES = 40
MAX_BATCH_CHARS = 2800  # Slack caps a section's text at 3000 characters


def run_link(dashboard_url: str, run_id: str | None) -> str | None:
    """The dashboard page of a run."""
    if not run_id:
        return None
    return f"{dashboard_url.rstrip('/')}/?run={quote(run_id, safe='')}"


def worst_level(alerts: Sequence[Alert]) -> str:
    return max((a.level for a in alerts), key=lambda lv: _RANK.get(lv, 0), default="info")


def _value(value: Any) -> str:
    if isinstance(value, float):
        return str(value) if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)[:200]
    return str(value)[:200]


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts or time.time()))


def slack_payload(alert: Alert, dashboard_url: str) -> dict[str, Any]:
    """``text`` (the notification fallback) plus one coloured attachment holding Block Kit blocks."""
    link = run_link(dashboard_url, alert.run_id)
    text = f"[{alert.level.upper()}] {alert.title}: {alert.message}"
    fields = [
        {"type": "mrkdwn", "text": f"*{k}*\n{_value(v)}"}
        for k, v in list(alert.data.items())[:MAX_FIELDS]
        if v is not None
    ]
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"{EMOJI.get(alert.level, '')} *{alert.title}*\n{alert.message}",
            },
        },
    ]
    if fields:
        blocks.append({"type": "section", "fields": fields})
    context = [f"level *{alert.level}*", f"rule `{alert.rule}`", _when(alert.ts)]
    if link:
        context.append(f"<{link}|open run {alert.run_id}>")
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    return {
        "text": text,
        "attachments": [{"color": COLOURS.get(alert.level, COLOURS["info"]), "blocks": blocks}],
    }


def slack_batch_payload(alerts: Sequence[Alert], dashboard_url: str) -> dict[str, Any]:
    """One Slack message summarising an alert storm (many alerts across runs at once)."""
    level = worst_level(alerts)
    runs = sorted({a.run_id or "-" for a in alerts})
    lines: list[str] = []
    size = 0
    # worst first, so a critical alert is never among the ones cut off
    for a in sorted(alerts, key=lambda a: -_RANK.get(a.level, 0)):
        link = run_link(dashboard_url, a.run_id)
        run = f"<{link}|{a.run_id}>" if link else "-"
        line = f"• [{a.level}] *{a.title}* {run}: {a.message}"[:300]
        if len(lines) == MAX_BATCH_LINES or size + len(line) > MAX_BATCH_CHARS:
            break
        lines.append(line)
        size += len(line) + 1
    if len(lines) < len(alerts):
        lines.append(f"… and {len(alerts) - len(lines)} more")
    header = f"{len(alerts)} alerts across {len(runs)} runs"
    return {
        "text": f"[{level.upper()}] {header}",
        "attachments": [
            {
                "color": COLOURS.get(level, COLOURS["info"]),
                "blocks": [
                    {
                        "type": "section",
                        "text": {"type": "mrkdwn", "text": f"{EMOJI.get(level, '')} *{header}*"},
                    },
                    {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}},
                ],
            }
        ],
    }


def email_subject(alert: Alert) -> str:
    return f"[traindash {alert.level.upper()}] {alert.title}"


def email_body(alert: Alert, dashboard_url: str) -> str:
    lines = [alert.message, "", f"Level: {alert.level}", f"Rule:  {alert.rule}", f"Time:  {_when(alert.ts)}"]
    if alert.run_id:
        lines.append(f"Run:   {alert.run_id}")
        lines.append(f"Open:  {run_link(dashboard_url, alert.run_id)}")
    if alert.data:
        lines.append("")
        lines.extend(f"{k}: {_value(v)}" for k, v in alert.data.items())
    return "\n".join(lines) + "\n"


def email_message(
    alerts: Sequence[Alert], dashboard_url: str, from_addr: str, to_addrs: Sequence[str]
) -> EmailMessage:
    """One plain-text email for one alert, or a digest for several."""
    msg = EmailMessage()
    if len(alerts) == 1:
        msg["Subject"] = email_subject(alerts[0])
        body = email_body(alerts[0], dashboard_url)
    else:
        runs = {a.run_id or "-" for a in alerts}
        msg["Subject"] = (
            f"[traindash {worst_level(alerts).upper()}] {len(alerts)} alerts across {len(runs)} runs"
        )
        body = "\n".join(f"--- {a.title} ---\n{email_body(a, dashboard_url)}" for a in alerts)
    msg["From"] = from_addr
    msg["To"] = ", ".join(to_addrs)
    msg.set_content(body)
    return msg

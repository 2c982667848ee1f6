"""Pure payload builders: Slack colours, run links, email subject and body, storm digests."""

from __future__ import annotations

import math

from traindash.alerts.payloads import COLOURS, email_message, run_link, slack_batch_payload, slack_payload
from traindash.alerts.rules import Alert

URL = "http://dash.example:8050"


def alert(level: str = "critical", run: str | None = "run/1") -> Alert:
    return Alert(
        level,
        "nan_metric",
        "NaN/Inf detected",
        "Non-finite values in loss",
        run,
        {"loss": math.nan, "episode": 7},
        1_700_000_000.0,
    )


def test_slack_payload_has_level_colour_text_and_run_link():
    for level in ("info", "warning", "critical"):
        p = slack_payload(alert(level), URL)
        assert p["attachments"][0]["color"] == COLOURS[level]
        assert p["text"] == f"[{level.upper()}] NaN/Inf detected: Non-finite values in loss"
    blocks = slack_payload(alert(), URL)["attachments"][0]["blocks"]
    context = blocks[-1]["elements"][0]["text"]
    assert f"<{URL}/?run=run%2F1|open run run/1>" in context
    assert {"type": "mrkdwn", "text": "*loss*\nnan"} in blocks[1]["fields"]
    assert COLOURS == {"info": "#2eb67d", "warning": "#ecb22e", "critical": "#e01e5a"}


def test_slack_payload_without_a_run():
    p = slack_payload(alert("info", None), URL)
    assert "open run" not in str(p) and run_link(URL, None) is None


def test_slack_batch_payload_summarises_a_storm():
    alerts = [alert("warning", f"r{i}") for i in range(50)] + [alert("critical", "rx")]
    p = slack_batch_payload(alerts, URL)
    assert p["text"] == "[CRITICAL] 51 alerts across 51 runs"
    assert p["attachments"][0]["color"] == COLOURS["critical"]
    text = p["attachments"][0]["blocks"][1]["text"]["text"]
    assert text.startswith("• [critical]") and text.endswith("more") and len(text) < 3000


def test_email_message_single_and_digest():
    msg = email_message([alert()], URL, "td@example.com", ["a@example.com", "b@example.com"])
    assert msg["Subject"] == "[traindash CRITICAL] NaN/Inf detected"
    assert msg["To"] == "a@example.com, b@example.com"
    body = msg.get_content()
    assert "Non-finite values in loss" in body and f"Open:  {URL}/?run=run%2F1" in body
    assert "loss: nan" in body
    digest = email_message([alert("warning", "r1"), alert("info", "r2")], URL, "td@x", ["a@x"])
    assert digest["Subject"] == "[traindash WARNING] 2 alerts across 2 runs"

"""Stalled, lost and recovered trainers, keyed so that a restart neither misses nor repeats one.

Pure: given the rule engine, a run's :class:`~alerts.follow.RunTrack`, its ``runs`` row and
the stall alerts stored for it. A stall (and the loss that may follow it) is keyed on the
run's last sign of life (``runs.last_seen``); the recovery on the stall it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from traindash.alerts.follow import RunTrack
from traindash.alerts.history import ENDED, RunInfo, status_marker
from traindash.alerts.rules import Alert, RuleEngine


def seed(
    engine: RuleEngine, track: RunTrack, info: RunInfo, stored: list[dict[str, Any]], baseline: bool
) -> None:
    """At start: what the stored stall alerts say is announced. With ``baseline`` (a first
    start, or a stall older than the consumer), the run's current status is taken as known."""
    st = engine.state(info.run_id)
    st.role, st.name = info.role, info.name
    track.recorded.update(a["alert_key"] for a in stored)
    if baseline or not stored:
        if baseline:
            st.status = info.status or "running"  # stalls from before are not news
        return
    marker = stored[-1]["alert_key"].rsplit(":", 1)[-1]
    current = [a for a in stored if a["alert_key"].endswith(":" + marker)]
    if any(a["rule"] == "trainer_recovered" for a in current):
        return
    for a in current:
        st.announced[a["rule"]] = Alert(a["level"], a["rule"], a["title"], a["message"], info.run_id)
    st.status = "lost" if "trainer_lost" in st.announced else "stalled"
    track.stall_marker = marker


def changes(engine: RuleEngine, track: RunTrack, info: RunInfo, now: float) -> Iterator[tuple[Alert, str]]:
    """Alerts from the run's status now, each with the marker of its key. A run's end is its
    END row's business, not the poll's (the poll may see it before the rows before it)."""
    status = info.status
    if status is None or status in ENDED:
        return
    for alert in engine.on_status(info.run_id, status, now, role=info.role, name=info.name):
        if alert.rule == "trainer_stalled" or track.stall_marker is None:
            track.stall_marker = status_marker(info.last_seen_us)
        yield alert, track.stall_marker
        if alert.rule == "trainer_recovered":
            track.stall_marker = None

"""What went missing, and when to ask: the sender's probes and re-sends, as pure logic.

While someone waits for an ack (or records wait without progress) the sender probes: a
heartbeat carrying the highest seq it has sent. The collector answers every heartbeat at
once with what it holds (``have``) and echoes the heartbeat's ``ts``. One connection keeps
its order, so records sent before that probe and above ``have`` were lost on the way
(dropped at a high-water mark, sent before the subscription, rolled back by a failed
commit): exactly those go again. Probes back off while unanswered, so a collector that is
merely slow gets about one probe per round trip, not a storm of heartbeats and blind
re-sends (with 1,000 streams, blind re-sends every ``resend_after`` multiplied the
collector's load until the last acks took over a minute). Only when no answer comes at
all does everything unacknowledged go again: after ``resend_after``, then twice that, and
so on up to ``RESEND_BACKOFF_MAX``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from traindash import wire

RESEND_BUDGET_BYTES = 8 * 1024 * 1024
# The first probe after a wait begins (a connection is made, close() starts, acks
# progress) goes out this soon; each unanswered one doubles the wait, up to the
# heartbeat interval.
EARLY_PROBE = 0.05
RESEND_BACKOFF_MAX = 30.0
MAX_PROBES = 64  # heartbeats remembered, to match the collector's answers to them


@dataclass
class Pending:
    """A batch sent and not yet acknowledged (its body in memory or in the spool)."""

    first: int
    last: int
    size: int
    sent_at: float
    body: bytes | None = None
    offset: int | None = None


class Recovery:
    """The probe schedule and the choice of what to send again, for one stream."""

    def __init__(self, now: float, heartbeat_interval: float, resend_after: float) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.resend_after = resend_after
        self.probes: OrderedDict[float, tuple[int, float]] = OrderedDict()  # ts -> (seq, sent)
        self.probe_at = 0.0
        self.probe_wait = EARLY_PROBE
        self.answered_at = now  # the collector's last answer to a probe
        self.lacks: list[tuple[int, int, float]] = []  # (have, probe seq, probe sent at)
        self.blind_resends = 0
        self.blind_at = now

    def ask_soon(self, now: float) -> None:
        """A wait begins (connected, closing): the next probe may go at once."""
        self.probe_at, self.probe_wait = now, EARLY_PROBE

    def due(self, now: float) -> bool:
        return now >= self.probe_at

    def sent(self, ts: float, seq: int, now: float, probe: bool) -> None:
        """A heartbeat went out; a probe (one someone waits on) backs the next one off."""
        self.probes[ts] = (seq, now)
        while len(self.probes) > MAX_PROBES:
            self.probes.popitem(last=False)
        if probe:
            self.probe_at = now + self.probe_wait
            self.probe_wait = min(2 * self.probe_wait, self.heartbeat_interval)

    def answered(self, ack: wire.Ack, now: float) -> None:
        """The collector's answer to a probe: note what it lacks."""
        if ack.probe is None:
            return
        self.answered_at = now
        probe = self.probes.pop(ack.probe, None)
        if probe is not None and ack.have is not None and ack.have < probe[0]:
            self.lacks.append((ack.have, *probe))

    def progressed(self, now: float) -> None:
        """Acks moved on: back-offs start over."""
        self.blind_resends = 0
        self.probe_wait = EARLY_PROBE
        self.probe_at = min(self.probe_at, now + EARLY_PROBE)

    def pick(
        self, unacked: Mapping[int, Pending], acked: int, now: float, last_progress: float
    ) -> list[Pending]:
        """What to send again now (in seq order, within ``RESEND_BUDGET_BYTES``)."""
        after = min(self.resend_after * 2**self.blind_resends, RESEND_BACKOFF_MAX)
        blind = (
            bool(unacked)
            and now - last_progress >= after
            and now - self.answered_at >= after
            and now - self.blind_at >= after
        )
        if not blind and not (self.lacks and unacked):
            self.lacks.clear()
            return []
        picked: dict[int, Pending] = {}
        budget = RESEND_BUDGET_BYTES
        for have, upto, probed_at in self.lacks:
            floor = max(have, acked)
            for entry in unacked.values():
                if entry.first > upto or budget <= 0:
                    break
                # Sent again after that probe: the answer to a later probe tells.
                if entry.last > floor and entry.sent_at <= probed_at and entry.first not in picked:
                    picked[entry.first] = entry
                    budget -= entry.size
        self.lacks.clear()
        if blind:
            self.blind_resends += 1
            self.blind_at = now
            for entry in unacked.values():
                if budget <= 0:
                    break
                if now - entry.sent_at >= after and entry.first not in picked:
                    picked[entry.first] = entry
                    budget -= entry.size
        return sorted(picked.values(), key=lambda e: e.first)

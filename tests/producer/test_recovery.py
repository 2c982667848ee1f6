"""The sender's probe schedule and re-send choice (pure logic, explicit clocks)."""

from __future__ import annotations

from collections import OrderedDict

from traindash import wire
from traindash.producer.recovery import EARLY_PROBE, RESEND_BACKOFF_MAX, Pending, Recovery

HB, RESEND_AFTER = 1.0, 2.0


def unacked(*spans: tuple[int, int, float]) -> OrderedDict[int, Pending]:
    return OrderedDict((first, Pending(first, last, 100, sent)) for first, last, sent in spans)


def firsts(entries: list[Pending]) -> list[int]:
    return [e.first for e in entries]


def test_what_the_collector_lacks_before_the_probe_goes_again_and_nothing_else() -> None:
    r = Recovery(0.0, HB, RESEND_AFTER)
    pending = unacked((1, 2, 0.0), (3, 4, 0.0), (5, 6, 0.0), (7, 8, 0.5))
    r.sent(ts=100.0, seq=6, now=0.1, probe=True)  # batches 1-6 went before it, 7-8 after
    r.answered(wire.Ack("r", 2, have=2, probe=100.0), now=0.2)
    assert firsts(r.pick(pending, acked=2, now=0.2, last_progress=0.0)) == [3, 5]
    assert r.pick(pending, acked=2, now=0.3, last_progress=0.0) == []  # asked once, sent once


def test_a_batch_sent_again_after_the_probe_waits_for_a_later_answer() -> None:
    r = Recovery(0.0, HB, RESEND_AFTER)
    pending = unacked((1, 2, 0.0), (3, 4, 0.3))  # 3-4 was re-sent after the probe went
    r.sent(ts=100.0, seq=4, now=0.1, probe=True)
    r.answered(wire.Ack("r", 0, have=0, probe=100.0), now=0.4)
    assert firsts(r.pick(pending, acked=0, now=0.4, last_progress=0.0)) == [1]


def test_a_slow_collector_that_answers_is_never_sent_anything_blindly() -> None:
    r = Recovery(0.0, HB, RESEND_AFTER)
    pending = unacked((1, 4, 0.0))
    for i in range(1, 60):  # a minute of answers saying "I have it, not committed yet"
        now = float(i)
        r.sent(ts=1000.0 + i, seq=4, now=now - 0.5, probe=True)
        r.answered(wire.Ack("r", 0, have=4, probe=1000.0 + i), now=now)
        assert r.pick(pending, acked=0, now=now, last_progress=0.0) == []


def test_with_no_answer_at_all_blind_resends_back_off() -> None:
    r = Recovery(0.0, HB, RESEND_AFTER)
    pending = unacked((1, 4, 0.0))
    sent_at = []
    for tick in range(1, 1200):
        now = tick / 10
        if r.pick(pending, acked=0, now=now, last_progress=0.0):
            pending[1].sent_at = now
            sent_at.append(now)
    gaps = [b - a for a, b in zip(sent_at, sent_at[1:], strict=False)]
    assert sent_at[0] == RESEND_AFTER
    assert gaps[:3] == [2 * RESEND_AFTER, 4 * RESEND_AFTER, 8 * RESEND_AFTER]
    assert max(gaps) <= RESEND_BACKOFF_MAX + 0.1


def test_unanswered_probes_back_off_and_progress_starts_over() -> None:
    r = Recovery(0.0, HB, RESEND_AFTER)
    r.ask_soon(0.0)
    waits, now = [], 0.0
    for _ in range(7):
        assert r.due(now)
        r.sent(ts=now, seq=1, now=now, probe=True)
        waits.append(round(r.probe_at - now, 3))
        now = r.probe_at
    assert waits == [EARLY_PROBE, 0.1, 0.2, 0.4, 0.8, HB, HB]
    r.progressed(now)
    assert r.probe_wait == EARLY_PROBE and r.probe_at <= now + EARLY_PROBE
    r.sent(ts=now, seq=1, now=now, probe=False)  # a liveness heartbeat does not back off
    assert r.probe_wait == EARLY_PROBE

"""A run's rows in seq order: out-of-order sections, holes, overlap, the safe watermark."""

from __future__ import annotations

import dataclasses

from traindash.alerts.follow import RunTrack
from traindash.alerts.rules import Alert
from traindash.wire import RecordKind

EP, MO = RecordKind.EPISODE, RecordKind.MODEL


def row(seq: int) -> dict:
    return {"seq": seq}


def test_sections_of_one_batch_are_evaluated_in_seq_order() -> None:
    t = RunTrack("r")
    t.start_at(1)
    for s in (2, 4, 6):  # the episode section of a batch
        t.add(s, (EP, row(s)))
    taken = [s for s, _ in t.take_contiguous()]
    t.evaluated = taken[-1]
    assert taken == [2]
    for s in (3, 5, 7):  # then its model section
        t.add(s, (MO, row(s)))
    taken = []
    for s, _ in t.take_contiguous():
        taken.append(s)
        t.evaluated = s
    assert taken == [3, 4, 5, 6, 7] and not t.pending


def test_rows_already_evaluated_are_dropped_and_a_read_back_fills_holes() -> None:
    t = RunTrack("r")
    t.start_at(10)
    t.add(9, (EP, row(9)))  # seen in the read-back already
    t.add(14, (EP, row(14)))  # beyond a hole (11..13 were dropped by PUB/SUB)
    assert list(t.pending) == [14]
    assert list(t.take_contiguous()) == []
    t.add(12, (EP, row(12)))  # from SQL; 11 and 13 hold nothing the rules read
    assert [s for s, _ in t.take_through(13)] == [12]
    assert list(t.pending) == [14]


def test_the_watermark_stays_behind_an_alert_not_recorded_yet() -> None:
    t = RunTrack("r")
    t.start_at(0)
    t.evaluated = 50
    assert t.safe_mark() == 50
    t.inflight[20] += 1
    t.inflight[30] += 1
    assert t.safe_mark() == 19
    del t.inflight[20]
    assert t.safe_mark() == 29
    del t.inflight[30]
    assert t.safe_mark() == 50


def test_an_alert_of_a_stream_is_keyed_on_the_stream_and_stored_under_its_run() -> None:
    fired = Alert("critical", "custom:dd", "Deep", "drawdown > 3 for run r#a", "r#a", {"x": 1})
    keyed = RunTrack("r#a").keyed(fired, "7", 7)
    assert (keyed.run_id, keyed.key, keyed.row_seq) == ("r", "r#a:custom:dd:7", 7)
    assert keyed.data == {"x": 1, "stream": "a"}
    plain = RunTrack("r").keyed(dataclasses.replace(fired, run_id="r"), "hb5", None)
    assert (plain.run_id, plain.key, plain.data) == ("r", "r:custom:dd:hb5", {"x": 1})

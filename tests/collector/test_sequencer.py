from __future__ import annotations

import numpy as np

from traindash.collector.sequencer import Sequencer
from traindash.wire import Batch, RecordKind, Section


def batch(first: int, last: int, run: str = "r") -> Batch:
    seqs = np.arange(first, last + 1, dtype=np.int64)
    cols = {"seq": seqs, "ts": np.zeros(len(seqs)), "note": [f"n{s}" for s in seqs]}
    return Batch(run, first, last, (Section(RecordKind.EPISODE, cols),))


def seqs(sections: list[Section]) -> list[int]:
    return [int(s) for sec in sections for s in sec.cols["seq"]]


def test_in_order_batches_are_accepted_and_marks_advance() -> None:
    s = Sequencer({})
    assert seqs(s.offer(batch(1, 3))) == [1, 2, 3]
    assert seqs(s.offer(batch(4, 5))) == [4, 5]
    assert s.mark("r") == 5


def test_duplicates_are_dropped_and_overlaps_trimmed() -> None:
    s = Sequencer({"r": 3})
    assert s.offer(batch(1, 3)) == []
    out = s.offer(batch(2, 6))
    assert seqs(out) == [4, 5, 6]
    assert out[0].cols["note"] == ["n4", "n5", "n6"]
    assert s.duplicates == 1


def test_early_batches_are_held_until_the_gap_fills() -> None:
    s = Sequencer({})
    assert s.offer(batch(4, 6)) == []
    assert s.offer(batch(7, 9)) == []
    assert s.mark("r") == 0
    assert seqs(s.offer(batch(1, 3))) == list(range(1, 10))
    assert s.mark("r") == 9 and not s.held


def test_held_batches_are_bounded() -> None:
    s = Sequencer({}, max_held=2)
    for first in (10, 20, 30):
        s.offer(batch(first, first + 1))
    assert len(s.held["r"]) == 2 and s.dropped_held == 1


def test_rollback_restores_committed_marks() -> None:
    s = Sequencer({"r": 2})
    s.offer(batch(3, 4))
    s.rollback()
    assert s.mark("r") == 2
    assert seqs(s.offer(batch(3, 4))) == [3, 4]
    s.commit()
    assert s.committed == {"r": 4}


def test_runs_are_independent() -> None:
    s = Sequencer({})
    s.offer(batch(1, 2, "a"))
    assert s.offer(batch(5, 6, "b")) == []
    assert s.mark("a") == 2 and s.mark("b") == 0


def test_a_commit_covers_only_its_own_marks_while_later_batches_wait() -> None:
    s = Sequencer({})
    s.offer(batch(1, 3))
    in_flight = {"r": s.mark("r")}
    s.offer(batch(4, 6))  # admitted while that commit runs
    s.commit(in_flight)
    assert s.committed == {"r": 3} and s.mark("r") == 6

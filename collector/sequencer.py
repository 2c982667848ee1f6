"""Exactly-once admission of records, per run: pure logic, no I/O.

A batch is accepted when it starts at or below ``acked + 1``; records at or below the
mark are dropped as duplicates; a batch that starts beyond the next expected seq is held
(bounded) until the gap is filled by a re-send. Marks advance only in working state until
the store commits them, so a failed commit rolls back cleanly.
"""

from __future__ import annotations

import numpy as np

from traindash.wire import Batch, Section

MAX_HELD_PER_RUN = 256


def _tail(section: Section, after: int) -> Section | None:
    """The rows of ``section`` whose seq is above ``after``."""
    seqs = section.cols["seq"]
    assert isinstance(seqs, np.ndarray)  # wire.decode guarantees an int64 seq column
    keep = seqs > after
    if keep.all():
        return section
    if not keep.any():
        return None
    idx = np.flatnonzero(keep)
    cols = {
        name: (values[keep] if isinstance(values, np.ndarray) else [values[i] for i in idx])
        for name, values in section.cols.items()
    }
    return Section(section.kind, cols, section.names)


class Sequencer:
    """Per-run high-water marks with a committed and a working copy."""

    def __init__(self, marks: dict[str, int], max_held: int = MAX_HELD_PER_RUN) -> None:
        self.committed = dict(marks)
        self.working = dict(marks)
        self.held: dict[str, dict[int, Batch]] = {}
        self.max_held = max_held
        self.duplicates = 0
        self.dropped_held = 0

    def mark(self, run_id: str) -> int:
        return self.working.get(run_id, 0)

    def offer(self, batch: Batch) -> list[Section]:
        """Sections of ``batch`` (and of held batches it unblocks) to store now."""
        run = batch.run_id
        acked = self.working.get(run, 0)
        if batch.last <= acked:
            self.duplicates += 1
            return []
        if batch.first > acked + 1:
            held = self.held.setdefault(run, {})
            if batch.first not in held and len(held) >= self.max_held:
                self.dropped_held += 1
                return []
            held[batch.first] = batch
            return []
        out = self._accept(batch, acked)
        held = self.held.get(run) or {}
        while held:
            acked = self.working[run]
            ready = [first for first in held if first <= acked + 1]
            if not ready:
                break
            for first in sorted(ready):
                b = held.pop(first)
                if b.last > self.working[run]:
                    out.extend(self._accept(b, self.working[run]))
        if not held:
            self.held.pop(run, None)
        return out

    def _accept(self, batch: Batch, acked: int) -> list[Section]:
        self.working[batch.run_id] = batch.last
        if batch.first > acked:
            return list(batch.sections)
        return [s for s in (_tail(sec, acked) for sec in batch.sections) if s is not None]

    def commit(self, marks: dict[str, int] | None = None) -> None:
        """The store committed ``marks`` (all working marks when None).

        The collector admits the next batches while a commit runs, so working marks may
        already be ahead of what that commit holds.
        """
        if marks is None:
            self.committed = dict(self.working)
        else:
            self.committed.update(marks)

    def rollback(self) -> None:
        self.working = dict(self.committed)
        self.held.clear()

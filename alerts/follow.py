"""Following one run's (or one stream's) rows in seq order: pure bookkeeping, no I/O.

Every record of a sequencing key has a seq (1, 2, 3, ...), whatever its kind, and the
collector publishes each committed section of a batch. The key is the run id for a run's only
writer and ``run#stream`` for each stream of a multi-writer run (each stream has its own seqs,
see docs/ray.md), so the alerts service keeps, per key:

* ``evaluated``: every seq up to it has been evaluated (or was of a kind no rule reads);
* ``pending``: rows that arrived out of order (a batch's sections come one kind at a time)
  or ahead of a hole; a hole that lasts is filled from SQL;
* ``inflight``: how many raised alerts of each row are not recorded yet. The watermark it
  may publish (:meth:`RunTrack.safe_mark`) stays below the oldest of them, so a restart
  evaluates that row again and retries the alert.

A row at or below ``evaluated`` is dropped on arrival: rows read from SQL and the same rows
from the live feed are evaluated once.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from traindash.alerts.history import alert_key
from traindash.alerts.rules import Alert
from traindash.wire import RecordKind, split_stream_key

MAX_PENDING = 50_000

Row = tuple[RecordKind, dict[str, Any]]


@dataclass
class RunTrack:
    """The alerts service's view of the rows of one sequencing key (a run, or a stream of one)."""

    key: str  # the run id, or ``run#stream``
    evaluated: int | None = None  # None until the start-up knows where this run begins
    ready: bool = False  # rule state rebuilt as of ``evaluated``
    ignored: bool = False  # not a trainer run
    pending: dict[int, Row] = field(default_factory=dict)
    inflight: Counter[int] = field(default_factory=Counter)
    published: int = 0  # the last watermark published
    recorded: set[str] = field(default_factory=set)  # keys stored for rows past the rebuild
    behind: tuple[int, float] | None = None  # (committed seq seen, since) while lagging
    stall_marker: str | None = None  # what the current stalled/lost alert is keyed on

    @property
    def run_id(self) -> str:
        return split_stream_key(self.key)[0]

    @property
    def stream(self) -> str | None:
        return split_stream_key(self.key)[1]

    def keyed(self, alert: Alert, marker: str, row_seq: int | None) -> Alert:
        """``alert`` as it is sent and recorded: keyed on this key, the rule and ``marker``
        (the row's seq, or a stall), under the run, naming the stream in its data."""
        data = alert.data if self.stream is None else {**alert.data, "stream": self.stream}
        key = alert_key(self.key, alert.rule, marker)
        return dataclasses.replace(alert, run_id=self.run_id, data=data, key=key, row_seq=row_seq)

    def start_at(self, evaluated: int) -> None:
        """Begin after ``evaluated`` (a watermark, or the run's end on a first start)."""
        self.evaluated = evaluated
        self.published = evaluated
        self.drop_through(evaluated)

    def add(self, seq: int, row: Row) -> None:
        if self.evaluated is not None and seq <= self.evaluated:
            return
        if len(self.pending) < MAX_PENDING:
            self.pending.setdefault(seq, row)
        # beyond the bound the row is dropped: the hole it leaves is read back from SQL

    def drop_through(self, seq: int) -> None:
        for s in [s for s in self.pending if s <= seq]:
            del self.pending[s]

    def take_contiguous(self) -> Iterator[tuple[int, Row]]:
        """Pending rows that follow ``evaluated`` without a hole, in order."""
        assert self.evaluated is not None
        while (nxt := self.evaluated + 1) in self.pending:
            yield nxt, self.pending.pop(nxt)

    def take_through(self, seq: int) -> list[tuple[int, Row]]:
        """Pending rows up to ``seq`` (holes below it are known to hold nothing to read)."""
        ready = sorted(s for s in self.pending if s <= seq)
        return [(s, self.pending.pop(s)) for s in ready]

    @property
    def full(self) -> bool:
        return len(self.pending) >= MAX_PENDING

    def safe_mark(self) -> int:
        """The highest seq whose alerts are all recorded (or were never raised)."""
        assert self.evaluated is not None
        return min(self.evaluated, min(self.inflight) - 1) if self.inflight else self.evaluated

"""Per-stream bookkeeping of the live views: which rows of a run are already shown.

A run written by several processes (streams) has one seq space per stream: stream ``a`` and
stream ``b`` both log seq 1, 2, 3, ... So "already shown" is decided per (kind, stream), never
per run: live rows name their stream in ``wire.Rows.stream``, history rows in the ``stream``
column, and both are None for a run's only writer (which then behaves exactly as one seq space).

Data sources hold a small integer per row, ``sid`` (0 = no stream), so a zoomed re-query can
be merged per stream too; :class:`SeqMarks` hands out those ids.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

Stream = str | None


def stream_names(table: pa.Table, n: int | None = None) -> list[Stream]:
    """A history query's ``stream`` column as a list (all None where the query has none)."""
    if "stream" not in table.column_names:
        return [None] * (table.num_rows if n is None else n)
    return table.column("stream").to_pylist()


def subset(cols: Mapping[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """The rows of ``cols`` (numpy arrays or lists) where ``keep`` holds."""
    idx = np.flatnonzero(keep)
    return {k: (v[idx] if isinstance(v, np.ndarray) else [v[i] for i in idx]) for k, v in cols.items()}


class SeqMarks:
    """The newest seq shown of each (kind, stream) of one run, and the run's stream ids."""

    def __init__(self) -> None:
        self.names: list[Stream] = [None]  # sid -> stream
        self._ids: dict[Stream, int] = {None: 0}
        self._marks: dict[tuple[Hashable, Stream], int] = {}

    def sid(self, stream: Stream) -> int:
        """The id of ``stream`` in this run's data sources (a new one the first time)."""
        sid = self._ids.get(stream)
        if sid is None:
            sid = self._ids[stream] = len(self.names)
            self.names.append(stream)
        return sid

    def sids(self, streams: Sequence[Stream]) -> np.ndarray:
        """Ids of a per-row list of stream names."""
        return np.fromiter((self.sid(s) for s in streams), dtype=np.int64, count=len(streams))

    def mark(self, kind: Hashable, stream: Stream = None) -> int:
        """The newest seq of ``kind`` shown from ``stream`` (0: none yet)."""
        return self._marks.get((kind, stream), 0)

    def seed(self, kind: Hashable, seq: Any, streams: Sequence[Stream] | None = None) -> None:
        """Note rows shown from history: ``seq`` with each row's stream (None: the only writer)."""
        seq = np.asarray(seq, dtype=np.int64)
        if not len(seq):
            return
        ids = np.zeros(len(seq), dtype=np.int64) if streams is None else self.sids(streams)
        newest = np.full(len(self.names), -1, dtype=np.int64)
        np.maximum.at(newest, ids, seq)
        for sid in np.flatnonzero(newest >= 0):
            key = (kind, self.names[sid])
            self._marks[key] = max(self._marks.get(key, 0), int(newest[sid]))

    def fresh(self, kind: Hashable, stream: Stream, seq: Any) -> np.ndarray:
        """Which of ``stream``'s live rows are new (seq above its mark); the mark moves on."""
        seq = np.asarray(seq, dtype=np.int64)
        keep = seq > self.mark(kind, stream)
        if keep.any():
            self._marks[(kind, stream)] = int(seq[keep].max())
        return keep

    def take(self, kind: Hashable, stream: Stream, cols: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The part of a live section not yet shown (history and live rows may overlap, and a
        reconnecting feed may deliver a section again); None when nothing is new."""
        keep = self.fresh(kind, stream, cols["seq"])
        if not keep.any():
            return None
        return cols if keep.all() else subset(cols, keep)


def merge_window(
    shown: Mapping[str, Any], fine: Mapping[str, np.ndarray], lo: float, hi: float, columns: Sequence[str]
) -> dict[str, np.ndarray]:
    """Shown rows outside ``[lo, hi]`` (episodes) plus the finer rows inside it, and the rows
    streamed since the fine query (above its newest seq of their stream).

    A one-writer run stays in seq order; a run of several streams is put in time order."""
    seq = np.asarray(shown["seq"], dtype=np.int64)
    sid = np.asarray(shown["sid"], dtype=np.int64)
    x = np.asarray(shown["episode"], dtype=np.float64)
    fine_sid = np.asarray(fine["sid"], dtype=np.int64)
    newest = np.full(int(max(sid.max(initial=0), fine_sid.max(initial=0))) + 1, -1, dtype=np.int64)
    np.maximum.at(newest, fine_sid, np.asarray(fine["seq"], dtype=np.int64))
    keep = (x < lo) | (x > hi) | (seq > newest[sid])
    merged = {k: np.concatenate([np.asarray(shown[k])[keep], np.asarray(fine[k])]) for k in columns}
    if (merged["sid"] == 0).all():
        order = np.argsort(merged["seq"], kind="stable")
    else:
        order = np.lexsort((merged["seq"], merged["sid"], merged["ts"]))
    return {k: v[order] for k, v in merged.items()}

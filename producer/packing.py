"""Pure conversion of queued log records into columnar wire sections.

A log call queues a tuple; the sender thread turns a run of tuples into sections, one per
record kind and set of custom fields, with typed columns (no per-value objects on the
wire). Custom numeric fields become float64 columns; anything else travels in ``extra``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from itertools import chain
from operator import itemgetter
from typing import Any, cast

import numpy as np

from traindash.wire import MAX_SCALAR_NAME_LEN, NAME_RE, RecordKind, Section

EPISODE = 0
MODEL = 1
OTHER = 2
SCALARS = 3  # (SCALARS, ts, step, {name: value}) from MetricsLogger.log
SYSTEM = 4  # (SYSTEM, ts, row): one row of a system-metrics sample (producer/system.py)

EPISODE_FIELDS = (
    "episode",
    "profit",
    "sharpe",
    "win_rate",
    "drawdown",
    "num_trades",
    "epsilon",
    "learning_rate",
)
INT_FIELDS = ("episode", "num_trades")
# RL fields of an episode, keyword arguments of log_episode with a type of their own
# (f: float, i: integer, b: boolean, s: text); NULL in DuckDB when not logged.
RL_FIELDS = {
    "episode_return": "f",
    "episode_length": "i",
    "env_step": "i",
    "terminated": "b",
    "truncated": "b",
    "env_index": "i",
    "worker": "s",
}
RESERVED = frozenset({"run_id", "seq", "ts", "extra"}) | frozenset(EPISODE_FIELDS)
MODEL_RESERVED = frozenset(
    {
        "run_id",
        "seq",
        "ts",
        "extra",
        "step",
        "episode",
        "loss",
        "q_mean",
        "q_std",
        "q_min",
        "q_max",
        "q_values",
        "grad_mean",
        "grad_std",
    }
)
MAX_Q_VALUES = 4096
_NUMERIC = (int, float, np.number)
_PLAIN_NUMBERS = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32})
_CODE = itemgetter(0)
_KWARGS = itemgetter(10)
_EPISODE_COLUMNS = ("ts", *EPISODE_FIELDS)
_MODEL_VALUES = itemgetter(1, 2, 3, 4)  # ts, step, episode, loss

# A plain episode (no custom fields, plain numbers) is queued as these packed bytes rather
# than a tuple; RECORD_DTYPE reads a run of them back as columns without per-value work.
EPISODE_RECORD = struct.Struct("<dqddddqdd")
RECORD_DTYPE = np.dtype([(name, "<i8" if name in INT_FIELDS else "<f8") for name in _EPISODE_COLUMNS])
assert RECORD_DTYPE.itemsize == EPISODE_RECORD.size


def plain(value: Any) -> Any:
    """A msgpack-friendly copy of ``value`` (numpy/torch scalars unwrapped, others as text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        if isinstance(value, int) and not -(2**63) <= value < 2**64:
            return str(value)
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if hasattr(value, "tolist"):
        return plain(value.tolist())
    if hasattr(value, "item"):
        try:
            return plain(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def _floats(values: list) -> np.ndarray:
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        out = np.empty(len(values))
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                out[i] = math.nan
        return out


def _ints_or_floats(values: np.ndarray) -> np.ndarray:
    if np.isfinite(values).all() and (np.abs(values) < 2**62).all():
        return values.astype(np.int64)
    return values


def _typed_column(kind: str, values: list) -> Any:
    if kind == "s":
        return [None if v is None else str(v) for v in values]
    column = _floats([math.nan if v is None else v for v in values])
    if kind == "f":
        return column
    if kind == "b" and np.isfinite(column).all():
        return column.astype(np.int64) != 0
    return _ints_or_floats(column)  # NaN (not logged) stays, and is NULL in DuckDB


def _custom_columns(
    dicts: Sequence[dict], keys: tuple, reserved: frozenset, typed: dict[str, str] | None = None
) -> tuple[dict, list | None]:
    cols: dict[str, Any] = {}
    extra: list | None = None
    for key in keys:
        values = [d[key] for d in dicts]
        if typed and key in typed:
            cols[key] = _typed_column(typed[key], values)
        elif key not in reserved and NAME_RE.match(key) and all(isinstance(v, _NUMERIC) for v in values):
            cols[key] = _floats(values)
        else:
            if extra is None:
                extra = [{} for _ in dicts]
            for row, v in zip(extra, values, strict=True):
                row[key] = plain(v)
    return cols, extra


def _column(rows: list[tuple], j: int) -> np.ndarray:
    try:
        return np.fromiter(map(itemgetter(j), rows), np.float64, len(rows))
    except (TypeError, ValueError):
        return _floats([r[j] for r in rows])


def _episode_section(rows: list[tuple], seqs: np.ndarray) -> Section:
    """Episodes queued as tuples: those with custom fields or values that are not numbers."""
    cols: dict[str, Any] = {"seq": seqs, "ts": _column(rows, 1)}
    for j, name in enumerate(EPISODE_FIELDS, start=2):
        if rows[0][j] is None and all(r[j] is None for r in rows):
            continue  # not logged (an RL episode's profit): NULL, not NaN
        column = _column(rows, j)
        cols[name] = _ints_or_floats(column) if name in INT_FIELDS else column
    kwargs = rows[0][10]
    if kwargs:
        custom, extra = _custom_columns([r[10] for r in rows], tuple(kwargs), RESERVED, RL_FIELDS)
        cols.update(custom)
        if extra is not None:
            cols["extra"] = extra
    return Section(RecordKind.EPISODE, cols)


def model_fields(row: tuple) -> dict[str, Any]:
    """Flattened custom fields of a queued model record (gradients, weights, kwargs)."""
    _, _ts, _step, _episode, _loss, _q, grads, weights, kwargs = row
    out: dict[str, Any] = {}
    if grads:
        for k, v in grads.items():
            if k not in ("mean", "std"):
                out[f"grad_{k}"] = v
    if weights:
        for k, v in weights.items():
            out[f"weight_{k}"] = v
    if kwargs:
        out.update(kwargs)
    return out


def _q_summary(q: np.ndarray | None) -> tuple[float, float, float, float]:
    if q is None or q.size == 0:
        return (math.nan,) * 4
    return float(q.mean()), float(q.std()), float(q.min()), float(q.max())


def _as_floats(q: Any) -> np.ndarray | None:
    if q is None or isinstance(q, np.ndarray):
        return q
    try:
        return np.array(q, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        return None


def _q_summaries(qs: list[Any]) -> tuple[np.ndarray, list]:
    """((4, n) array of mean, std, min, max per row; the rows' values as lists).

    A row's Q-values arrive as a float64 array, or as the tuple copy of the list the
    trainer passed (cheaper for the training thread); None when not logged.
    """
    if all(type(q) is tuple for q in qs):
        try:
            m = np.array(qs, dtype=np.float64)
        except (TypeError, ValueError):
            m = None
        if m is not None and m.ndim == 2 and 0 < m.shape[1] <= MAX_Q_VALUES:
            return _stacked_summary(m), m.tolist()
    qs = [_as_floats(q) for q in qs]
    sizes = {q.size for q in qs if q is not None}
    if len(sizes) == 1 and all(q is not None for q in qs):
        size = sizes.pop()
        if 0 < size <= MAX_Q_VALUES:
            # One stacked pass instead of four reductions per row (and no np.std, whose
            # Python-level implementation is a dozen calls).
            m = np.stack(qs)
            return _stacked_summary(m), m.tolist()
    summary = np.array([_q_summary(q) for q in qs], dtype=np.float64).reshape(len(qs), 4)
    return summary.T.copy(), [None if q is None else q[:MAX_Q_VALUES].tolist() for q in qs]


def _stacked_summary(m: np.ndarray) -> np.ndarray:
    mean = m.sum(axis=1) / m.shape[1]
    d = m - mean[:, None]
    std = np.sqrt(np.einsum("ij,ij->i", d, d) / m.shape[1])
    return np.array([mean, std, m.min(axis=1), m.max(axis=1)])


def _model_section(rows: list[tuple], seqs: np.ndarray, fields: list[dict]) -> Section:
    n = len(rows)
    try:
        m = np.fromiter(chain.from_iterable(map(_MODEL_VALUES, rows)), np.float64, n * 4)
        ts, step, episode, loss = m.reshape(n, 4).T.copy()
        cols: dict[str, Any] = {
            "seq": seqs,
            "ts": ts,
            "step": step.astype(np.int64),
            "episode": _ints_or_floats(episode),
            "loss": loss,
        }
    except (TypeError, ValueError):  # None, strings, objects: one value at a time
        cols = {
            "seq": seqs,
            "ts": _floats([r[1] for r in rows]),
            "step": np.array([r[2] for r in rows], dtype=np.int64),
            "episode": _ints_or_floats(_floats([math.nan if r[3] is None else r[3] for r in rows])),
            "loss": _floats([r[4] for r in rows]),
        }
    # Columns nobody logged are left out (NULL in DuckDB) rather than sent as NaN, so a
    # real NaN stays distinguishable from "not logged".
    if any(r[5] is not None for r in rows):
        summary, values = _q_summaries([r[5] for r in rows])
        cols["q_mean"], cols["q_std"], cols["q_min"], cols["q_max"] = summary
        cols["q_values"] = values
    grads = [r[6] or {} for r in rows]
    for key in ("mean", "std"):
        if any(key in g for g in grads):
            cols[f"grad_{key}"] = _floats([g.get(key, math.nan) for g in grads])
    if fields[0]:
        custom, extra = _custom_columns(fields, tuple(fields[0]), MODEL_RESERVED)
        cols.update(custom)
        if extra is not None:
            cols["extra"] = extra
    return Section(RecordKind.MODEL, cols)


def _other_section(row: tuple, seq: int) -> Section:
    _, ts, kind, fields = row
    cols: dict[str, Any] = {"seq": np.array([seq], dtype=np.int64), "ts": np.array([ts], dtype=np.float64)}
    for k, v in fields.items():
        if NAME_RE.match(k) and k not in ("seq", "ts"):
            cols[k] = [plain(v)]
    return Section(kind, cols)


def _system_section(rows: list[tuple], seqs: np.ndarray) -> Section:
    """System rows with the same fields: numbers as float64 columns, tags as values."""
    cols: dict[str, Any] = {"seq": seqs, "ts": _floats([r[1] for r in rows])}
    for key in rows[0][2]:
        values = [r[2][key] for r in rows]
        if not NAME_RE.match(key) or key in ("seq", "ts", "run_id", "extra"):
            continue
        if all(isinstance(v, _NUMERIC) and not isinstance(v, bool) for v in values):
            cols[key] = _floats(values)
        else:
            cols[key] = [plain(v) for v in values]
    return Section(RecordKind.SYSTEM, cols)


def _record_section(records: list[bytes], seqs: np.ndarray) -> Section:
    block = np.frombuffer(b"".join(records), RECORD_DTYPE)
    cols: dict[str, Any] = {"seq": seqs}
    for name in _EPISODE_COLUMNS:
        cols[name] = block[name]
    return Section(RecordKind.EPISODE, cols)


def unpack_record(record: bytes) -> tuple:
    """The queued tuple form of a packed episode record."""
    return (EPISODE, *EPISODE_RECORD.unpack(record), None)


def pack(rows: list[tuple | bytes], first_seq: int) -> list[Section]:
    """Sections for ``rows``, which get seqs ``first_seq, first_seq + 1, ...`` in order.

    A row is a queued tuple, or a plain episode packed as :data:`EPISODE_RECORD` bytes.
    """
    n = len(rows)
    types = set(map(type, rows))
    if types == {bytes}:  # the common case: nothing but plain episodes
        plain = cast("list[bytes]", rows)
        return [_record_section(plain, np.arange(first_seq, first_seq + n, dtype=np.int64))]
    sections = []
    if bytes in types:
        at = [i for i, row in enumerate(rows) if type(row) is bytes]
        plain = cast("list[bytes]", [rows[i] for i in at])
        sections.append(_record_section(plain, np.asarray(at, dtype=np.int64) + first_seq))
        keep = [i for i, row in enumerate(rows) if type(row) is not bytes]
        rows = [rows[i] for i in keep]
        seq_of = np.asarray(keep, dtype=np.int64) + first_seq
    else:
        seq_of = np.arange(first_seq, first_seq + n, dtype=np.int64)
    with np.errstate(all="ignore"):
        try:
            return sections + _pack(rows, seq_of)  # type: ignore[arg-type]
        except Exception:
            # Odd values must not cost rows: fall back to one section per record.
            return sections + [
                _row_section(row, int(seq_of[i]))  # type: ignore[arg-type]
                for i, row in enumerate(rows)
            ]


def _fields(row: tuple) -> tuple[RecordKind, dict[str, Any]]:
    code = row[0]
    if code == EPISODE:
        fields = dict(zip(EPISODE_FIELDS, row[2:10], strict=True))
        fields.update(row[10] or {})
        return RecordKind.EPISODE, fields
    if code == MODEL:
        fields = {"step": row[2], "episode": row[3], "loss": row[4]}
        if row[5] is not None:
            fields["q_values"] = plain(_as_floats(row[5]))
        fields.update(model_fields(row))
        return RecordKind.MODEL, fields
    if code == SYSTEM:
        return RecordKind.SYSTEM, dict(row[2])
    return row[2], dict(row[3])


def _row_section(row: tuple, seq: int) -> Section:
    if row[0] == SCALARS:
        return _scalars_section([row], np.array([seq], dtype=np.int64))
    kind, fields = _fields(row)
    cols: dict[str, Any] = {"seq": np.array([seq], dtype=np.int64), "ts": _floats([row[1]])}
    extra: dict[str, Any] = {}
    for k, v in fields.items():
        if not NAME_RE.match(k) or k in ("seq", "ts", "extra", "run_id"):
            extra[k] = plain(v)
        elif isinstance(v, _NUMERIC):
            cols[k] = _floats([v])
        else:
            cols[k] = [plain(v)]
    if extra:
        cols["extra"] = [extra]
    return Section(kind, cols)


def _pack(rows: list[tuple], seq_of: np.ndarray) -> list[Section]:
    groups: dict[tuple, list[int]] = {}
    model_extra: dict[int, dict] = {}
    for i, row in enumerate(rows):
        code = row[0]
        if code == EPISODE:
            key: tuple = (EPISODE, tuple(row[10]) if row[10] else ())
        elif code == MODEL:
            fields = model_extra[i] = model_fields(row)
            grads = row[6] or {}
            key = (MODEL, tuple(fields), row[5] is not None, "mean" in grads, "std" in grads)
        elif code == SCALARS:
            key = (SCALARS, tuple(row[3]))
        elif code == SYSTEM:
            key = (SYSTEM, tuple(row[2]))
        else:
            key = (OTHER, i)
        groups.setdefault(key, []).append(i)
    sections = []
    for key, idx in groups.items():
        seqs = seq_of[idx]
        if key[0] == EPISODE:
            sections.append(_episode_section([rows[i] for i in idx], seqs))
        elif key[0] == MODEL:
            sections.append(_model_section([rows[i] for i in idx], seqs, [model_extra[i] for i in idx]))
        elif key[0] == SCALARS:
            sections.append(_scalars_section([rows[i] for i in idx], seqs))
        elif key[0] == SYSTEM:
            sections.append(_system_section([rows[i] for i in idx], seqs))
        else:
            sections.append(_other_section(rows[idx[0]], int(seqs[0])))
    return sections


def _scalar_values(values: list) -> np.ndarray | None:
    """float64 values of one scalar name; None when none of them is a number."""
    if set(map(type, values)) <= _PLAIN_NUMBERS:
        try:
            return np.fromiter(values, np.float64, len(values))
        except (OverflowError, TypeError, ValueError):
            pass
    out = np.full(len(values), math.nan)
    found = False
    for i, v in enumerate(values):
        if isinstance(v, (str, bytes)) or v is None:
            continue  # text is not a scalar, even when it reads as a number
        try:
            out[i] = float(v)
            found = True
        except (OverflowError, TypeError, ValueError):
            pass
    return out if found else None


def _scalars_section(rows: list[tuple], seqs: np.ndarray) -> Section:
    """Records of ``MetricsLogger.log`` with the same names, as one ``v{i}`` column per name.

    Values that are not numbers (text, objects) are left out: NaN beside numbers of the
    same name, and a name with no number at all is dropped.
    """
    n = len(rows)
    cols: dict[str, Any] = {
        "seq": seqs,
        "ts": _column(rows, 1),
        "step": np.fromiter(map(itemgetter(2), rows), np.int64, n),
    }
    names: list[str] = []
    seen: set[str] = set()
    for key in rows[0][3]:
        name = key if type(key) is str else str(key)
        name = name.replace("\0", "")[:MAX_SCALAR_NAME_LEN]
        if not name or name in seen:
            continue
        values = _scalar_values([r[3][key] for r in rows])
        if values is None:
            continue
        seen.add(name)
        cols[f"v{len(names)}"] = values
        names.append(name)
    return Section(RecordKind.SCALARS, cols, tuple(names))

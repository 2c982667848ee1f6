"""Pure mapping from wire sections to Arrow tables shaped like the DuckDB tables.

No I/O here: given a section and the columns a table already has, build the Arrow table
to insert and name the custom columns that must be added first.
"""

from __future__ import annotations

import json
from itertools import chain
from typing import Any

import numpy as np
import pyarrow as pa

from traindash.output import json_safe
from traindash.wire import STREAM_SEP, RecordKind, Section, split_stream_key

EPISODES = "episodes"
MODEL_METRICS = "model_metrics"
ALERTS = "alerts"
SCALARS = "scalars"
SUMMARIES = "summaries"
SYSTEM = "system"

TABLE_OF_KIND = {
    RecordKind.EPISODE: EPISODES,
    RecordKind.MODEL: MODEL_METRICS,
    RecordKind.ALERT: ALERTS,
    RecordKind.SCALARS: SCALARS,
    RecordKind.SUMMARY: SUMMARIES,
    RecordKind.SYSTEM: SYSTEM,
}

# Column -> DuckDB type, in table order. Custom numeric fields become extra DOUBLE columns.
CORE_COLUMNS: dict[str, dict[str, str]] = {
    EPISODES: {
        "run_id": "VARCHAR",
        "seq": "BIGINT",
        "ts": "TIMESTAMP",
        "episode": "BIGINT",
        "profit": "DOUBLE",
        "sharpe": "DOUBLE",
        "win_rate": "DOUBLE",
        "drawdown": "DOUBLE",
        "num_trades": "BIGINT",
        "epsilon": "DOUBLE",
        "learning_rate": "DOUBLE",
        "extra": "JSON",
        # RL fields (schema v2), NULL when not logged
        "episode_return": "DOUBLE",
        "episode_length": "BIGINT",
        "env_step": "BIGINT",
        "terminated": "BOOLEAN",
        "truncated": "BOOLEAN",
        "env_index": "BIGINT",
        "worker": "VARCHAR",
        "stream": "VARCHAR",  # schema v5: the writer of a multi-stream run, NULL otherwise
    },
    MODEL_METRICS: {
        "run_id": "VARCHAR",
        "seq": "BIGINT",
        "ts": "TIMESTAMP",
        "step": "BIGINT",
        "episode": "BIGINT",
        "loss": "DOUBLE",
        "q_mean": "DOUBLE",
        "q_std": "DOUBLE",
        "q_min": "DOUBLE",
        "q_max": "DOUBLE",
        "q_values": "DOUBLE[]",
        "grad_mean": "DOUBLE",
        "grad_std": "DOUBLE",
        "extra": "JSON",
        "stream": "VARCHAR",
    },
    ALERTS: {
        "ts": "TIMESTAMP",
        "run_id": "VARCHAR",
        "level": "VARCHAR",
        "rule": "VARCHAR",
        "title": "VARCHAR",
        "message": "VARCHAR",
        "data": "JSON",
        "channels": "VARCHAR[]",
        "source": "VARCHAR",
        "seq": "BIGINT",
        "alert_key": "VARCHAR",
        "row_seq": "BIGINT",
    },
    SCALARS: {
        "run_id": "VARCHAR",
        "seq": "BIGINT",
        "ts": "TIMESTAMP",
        "step": "BIGINT",
        "name": "VARCHAR",
        "value": "DOUBLE",
        "stream": "VARCHAR",
    },
    SUMMARIES: {
        "run_id": "VARCHAR",
        "seq": "BIGINT",
        "ts": "TIMESTAMP",
        "step": "BIGINT",
        "name": "VARCHAR",
        "kind": "VARCHAR",
        "text": "VARCHAR",
        "values": "DOUBLE[]",
        "count": "BIGINT",
        "min": "DOUBLE",
        "max": "DOUBLE",
        "mean": "DOUBLE",
        "std": "DOUBLE",
        "extra": "JSON",
        "stream": "VARCHAR",
    },
    # One row per sample for the process and its host (gpu_index NULL), one per GPU; see
    # docs/system.md. Created by migration 3.
    SYSTEM: {
        "run_id": "VARCHAR",
        "seq": "BIGINT",
        "ts": "TIMESTAMP",
        "host": "VARCHAR",
        "pid": "BIGINT",
        "gpu_index": "BIGINT",
        "gpu_uuid": "VARCHAR",
        "gpu_name": "VARCHAR",
        "cpu_percent": "DOUBLE",
        "rss_bytes": "BIGINT",
        "host_cpu_percent": "DOUBLE",
        "host_mem_used_bytes": "BIGINT",
        "host_mem_total_bytes": "BIGINT",
        "host_mem_percent": "DOUBLE",
        "load_1m": "DOUBLE",
        "load_5m": "DOUBLE",
        "load_15m": "DOUBLE",
        "disk_read_bytes_per_s": "DOUBLE",
        "disk_write_bytes_per_s": "DOUBLE",
        "net_recv_bytes_per_s": "DOUBLE",
        "net_sent_bytes_per_s": "DOUBLE",
        "gpu_util_percent": "DOUBLE",
        "gpu_mem_used_bytes": "BIGINT",
        "gpu_mem_total_bytes": "BIGINT",
        "gpu_power_w": "DOUBLE",
        "gpu_temp_c": "DOUBLE",
        "gpu_sm_clock_mhz": "DOUBLE",
        "gpu_proc_mem_bytes": "BIGINT",
        "extra": "JSON",
        "stream": "VARCHAR",
    },
}

# A table takes at most this many custom (non-core) DOUBLE columns. Width is not free in
# DuckDB: each new column is one ALTER TABLE (one ADD COLUMN per statement), whose cost
# grows with the width, and every later INSERT pays for every column. Measured here
# (bench/first_commit.py, a busy 2-core machine): about 1-2.5 ms per new column up to 500
# columns, 5 ms at 1,000, 9 ms at 2,000, 18 ms at 4,000; a 1,000-row insert takes 18 ms
# into a table of 100 custom columns, 0.3-0.5 s at 500, 2.5 s at 2,000. At 500 the commit
# that brings them all takes about a second. Past the cap, further names go to the long
# ``scalars`` table (name, value at the row's episode or step; alerts keep them in ``data``),
# and the collector says so once per table.
MAX_CUSTOM_COLUMNS = 500
# The x of an overflowing row in ``scalars``: the episode, or the training step.
OVERFLOW_STEP = {"episodes": "episode", "model_metrics": "step"}

_ARROW_TYPES = {
    "VARCHAR": pa.string(),
    "BIGINT": pa.int64(),
    "DOUBLE": pa.float64(),
    "BOOLEAN": pa.bool_(),
    "TIMESTAMP": pa.timestamp("us"),
    "JSON": pa.string(),
    "DOUBLE[]": pa.list_(pa.float64()),
    "VARCHAR[]": pa.list_(pa.string()),
}


def to_json(value: Any) -> str | None:
    """JSON text for DuckDB; NaN/Inf become strings since JSON has no spelling for them."""
    if value is None:
        return None
    return json.dumps(json_safe(value), default=str, allow_nan=False)


def constant(value: str, n: int) -> pa.Array:
    """``n`` copies of a string, dictionary-encoded (no per-row string objects)."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.zeros(n, dtype=np.int32)), pa.array([value], type=pa.string())
    )


def timestamps(ts: np.ndarray) -> pa.Array:
    micros = np.nan_to_num(ts, nan=0.0, posinf=0.0, neginf=0.0) * 1e6
    return pa.array(micros.astype(np.int64), type=pa.int64()).cast(pa.timestamp("us"))


def _integers(values: np.ndarray) -> pa.Array:
    if values.dtype.kind in "iu":
        return pa.array(values, type=pa.int64())
    finite = np.isfinite(values) & (np.abs(values) < 2**62)
    return pa.array(np.where(finite, values, 0).astype(np.int64), mask=~finite)


def _float_list(values: list) -> pa.Array:
    out: list[list[float] | None] = []
    for v in values:
        if isinstance(v, (list, tuple)) and all(isinstance(x, (int, float)) for x in v):
            out.append([float(x) for x in v])
        else:
            out.append(None)
    return pa.array(out, type=pa.list_(pa.float64()))


def _strings(values: list) -> pa.Array:
    return pa.array(
        [v if isinstance(v, str) else (None if v is None else to_json(v)) for v in values], type=pa.string()
    )


def _string_lists(values: list) -> pa.Array:
    out = [[str(x) for x in v] if isinstance(v, (list, tuple)) else None for v in values]
    return pa.array(out, type=pa.list_(pa.string()))


def _convert(sqltype: str, values: Any) -> pa.Array:
    if isinstance(values, np.ndarray):
        if sqltype == "BIGINT":
            return _integers(values)
        if sqltype == "DOUBLE":
            return pa.array(values.astype(np.float64, copy=False))
        if sqltype == "BOOLEAN":
            known = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), dtype=bool)
            return pa.array(values != 0, mask=~known)
        if sqltype == "TIMESTAMP":
            return timestamps(values.astype(np.float64, copy=False))
        if sqltype in ("VARCHAR", "JSON"):
            return pa.array([str(v) for v in values.tolist()], type=pa.string())
        return pa.nulls(len(values), type=_ARROW_TYPES[sqltype])
    if sqltype == "DOUBLE[]":
        return _float_list(values)
    if sqltype == "VARCHAR[]":
        return _string_lists(values)
    if sqltype == "JSON":
        return pa.array([to_json(v) for v in values], type=pa.string())
    if sqltype == "VARCHAR":
        return _strings(values)
    if sqltype == "BOOLEAN":
        return pa.array([v if isinstance(v, bool) else None for v in values], type=pa.bool_())
    if sqltype in ("BIGINT", "DOUBLE"):  # numbers in a column of msgpack values
        ok = int if sqltype == "BIGINT" else (int, float)
        return pa.array(
            [v if isinstance(v, ok) and not isinstance(v, bool) and abs(v) < 2**63 else None for v in values],
            type=_ARROW_TYPES[sqltype],
        )
    return pa.nulls(len(values), type=_ARROW_TYPES[sqltype])


def custom_room(table: str, existing: dict[str, str]) -> int:
    """How many more custom columns ``table`` takes before it reaches ``MAX_CUSTOM_COLUMNS``."""
    core = {name.lower() for name in CORE_COLUMNS[table]}
    return max(0, MAX_CUSTOM_COLUMNS - sum(1 for key in existing if key not in core))


def merged(items: list[tuple[str, Section]]) -> list[tuple[str | pa.Array, Section]]:
    """Sections of the same kind and fields joined into one, with each row's stream id.

    With many streams, a commit holds thousands of one-row sections; building an Arrow
    table per section cost about half a millisecond each, per row.
    """
    groups: dict[tuple, list[tuple[str, Section]]] = {}
    for stream_id, section in items:
        # a scalars section's columns mean what its names say: only the same names join
        fields = frozenset((k, isinstance(v, np.ndarray)) for k, v in section.cols.items())
        key = (section.kind, fields, section.names)
        groups.setdefault(key, []).append((stream_id, section))
    out: list[tuple[str | pa.Array, Section]] = []
    for group in groups.values():
        if len(group) == 1:
            out.append(group[0])
            continue
        sections = [section for _, section in group]
        cols: dict[str, Any] = {}
        for name, first in sections[0].cols.items():
            parts = [section.cols[name] for section in sections]
            cols[name] = np.concatenate(parts) if isinstance(first, np.ndarray) else list(chain(*parts))
        ids = dict.fromkeys(stream_id for stream_id, _ in group)
        index = {stream_id: i for i, stream_id in enumerate(ids)}
        rows = np.repeat([index[stream_id] for stream_id, _ in group], [len(s) for s in sections])
        streams = pa.DictionaryArray.from_arrays(
            pa.array(rows.astype(np.int32)), pa.array(list(ids), pa.string())
        )
        out.append((streams, Section(sections[0].kind, cols, sections[0].names)))
    return out


def section_table(
    table: str, stream_id: str | pa.Array, section: Section, existing: dict[str, str], room: int | None = None
) -> tuple[pa.Table, dict[str, str], list[str]]:
    """The Arrow table to insert for ``section``, the new DOUBLE columns it needs, and the
    custom names that did not fit.

    ``existing`` maps lower-cased column names of the DuckDB table to their names there;
    custom columns match case-insensitively, as DuckDB identifiers do. At most ``room``
    new columns (default: :func:`custom_room`); numeric fields past it join the ``extra``
    JSON like non-numeric ones. ``stream_id``: one for all rows, or one per row.
    """
    if table == SCALARS:
        return scalars_table(stream_id, section), {}, []
    core = CORE_COLUMNS[table]
    if room is None:
        room = custom_room(table, existing)
    n = len(section)
    arrays: dict[str, pa.Array] = {}
    new_columns: dict[str, str] = {}
    leftovers: dict[str, list] = {}
    overflow: list[str] = []
    for name, values in section.cols.items():
        key = name.lower()
        if name in core:
            arrays[name] = _convert(core[name], values)
        elif isinstance(values, np.ndarray):
            column = existing.get(key) or new_columns.get(key)
            if column is None and len(new_columns) < room:
                column = new_columns[key] = name
            if column is None:
                overflow.append(name)
                if table == ALERTS:
                    leftovers[name] = values.tolist()
            else:
                arrays[column] = pa.array(values.astype(np.float64, copy=False))
        else:
            leftovers[name] = values
    streams = stream_id if isinstance(stream_id, pa.Array) else constant(stream_id, n)
    if table == ALERTS:
        arrays["source"] = streams
        if "run_id" not in section.cols:
            arrays["run_id"] = streams
    else:
        arrays["run_id"] = streams
    extra_col = "data" if table == ALERTS else "extra"
    if leftovers:
        base = section.cols.get(extra_col)
        rows = []
        for i in range(n):
            row = dict(base[i]) if isinstance(base, list) and isinstance(base[i], dict) else {}
            for name, values in leftovers.items():
                if values[i] is not None:
                    row[name] = values[i]
            rows.append(to_json(row) if row else None)
        arrays[extra_col] = pa.array(rows, type=pa.string())
    return pa.table(arrays), {v: "DOUBLE" for v in new_columns.values()}, overflow


def overflow_scalars(table: str, stream_id: str | pa.Array, section: Section, names: list[str]) -> pa.Table:
    """Custom fields past the column cap, in the long form of ``scalars``: one row per
    record and name, at the record's episode (or step; else its seq)."""
    n, k = len(section), len(names)
    cols = section.cols
    seq = np.asarray(cols["seq"], dtype=np.int64)
    at = cols.get(OVERFLOW_STEP.get(table, "seq"))
    step = np.asarray(at, dtype=np.float64) if isinstance(at, np.ndarray) else seq.astype(np.float64)
    step = np.where(np.isfinite(step), step, seq).astype(np.int64)
    values = np.column_stack([np.asarray(cols[name], dtype=np.float64) for name in names]).ravel()
    runs = constant(stream_id, n) if isinstance(stream_id, str) else stream_id
    return pa.table(
        {
            "run_id": runs.take(pa.array(np.repeat(np.arange(n), k))),
            "seq": pa.array(np.repeat(seq, k)),
            "ts": timestamps(np.repeat(np.asarray(cols["ts"], dtype=np.float64), k)),
            "step": pa.array(np.repeat(step, k)),
            "name": pa.array(np.tile(np.array(names, dtype=object), n), type=pa.string()),
            "value": pa.array(values),
        }
    )


def scalars_table(stream_id: str | pa.Array, section: Section) -> pa.Table:
    """A ``scalars`` section in long form: one row per record and name, names dictionary-encoded.
    ``stream_id``: one for all records, or one per record (sections merged across runs)."""
    n, k = len(section), len(section.names)
    cols = section.cols
    seq = np.asarray(cols["seq"], dtype=np.int64)
    ts = np.asarray(cols["ts"], dtype=np.float64)
    step = np.asarray(cols["step"], dtype=np.int64)
    if k:
        values = np.column_stack([np.asarray(cols[f"v{i}"], dtype=np.float64) for i in range(k)]).ravel()
    else:
        values = np.empty(0)
    names = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(k, dtype=np.int32), n)), pa.array(list(section.names), type=pa.string())
    )
    runs = (
        constant(stream_id, n * k)
        if isinstance(stream_id, str)
        else stream_id.take(pa.array(np.repeat(np.arange(n), k)))
    )
    return pa.table(
        {
            "run_id": runs,
            "seq": pa.array(np.repeat(seq, k)),
            "ts": timestamps(np.repeat(ts, k)),
            "step": pa.array(np.repeat(step, k)),
            "name": names,
            "value": pa.array(values),
        }
    )


def records(section: Section) -> list[dict[str, Any]]:
    """Rows of a small section (run/end records) as dicts of plain Python values."""
    out = []
    cols = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in section.cols.items()}
    for i in range(len(section)):
        out.append({k: v[i] for k, v in cols.items()})
    return out


def unified(parts: list[pa.Table]) -> list[pa.Table]:
    """``parts`` as one table (columns a part lacks are null there), or by schema when a
    column's type differs between them.

    Built column by column, with a null run for each gap: Arrow's own schema promotion
    makes a null array for every column a part lacks, which for hundreds of one-episode
    sections with their own custom names took seconds.
    """
    if len(parts) == 1:
        return parts
    types: dict[str, pa.DataType] = {}
    pieces: dict[str, list[tuple[int, pa.ChunkedArray]]] = {}
    at = 0
    for part in parts:
        for field_, column in zip(part.schema, part.columns, strict=True):
            if types.setdefault(field_.name, field_.type) != field_.type:
                return _by_schema(parts)
            pieces.setdefault(field_.name, []).append((at, column))
        at += part.num_rows
    total, columns = at, {}
    for name, found in pieces.items():
        chunks: list[pa.Array] = []
        filled = 0
        for start, column in found:
            if start > filled:
                chunks.append(pa.nulls(start - filled, types[name]))
            chunks.extend(column.chunks)
            filled = start + len(column)
        if filled < total:
            chunks.append(pa.nulls(total - filled, types[name]))
        columns[name] = pa.chunked_array(chunks, types[name]).combine_chunks()
    return [pa.table(columns)]


def _by_schema(parts: list[pa.Table]) -> list[pa.Table]:
    groups: dict[pa.Schema, list[pa.Table]] = {}
    for part in parts:
        groups.setdefault(part.schema, []).append(part)
    return [ps[0] if len(ps) == 1 else pa.concat_tables(ps) for ps in groups.values()]


def run_records(sections: list[tuple[str, Section]], kind: RecordKind) -> dict[str, dict]:
    """The last ``kind`` record (a run's start or end) of each run among ``sections``."""
    out: dict[str, dict] = {}
    for stream_id, section in sections:
        if section.kind is kind:
            for r in records(section):
                out[stream_id] = r
    return out


def split_streams(arrow: pa.Table, has_stream: bool) -> pa.Table:
    """Rows written by the streams of a multi-writer run: ``run_id`` holds the sequencing key
    ``run#stream``; store the run in ``run_id`` and the writer in ``stream``.

    Works on the distinct keys only (a dictionary), so a commit of many streams' rows costs
    one split per stream, not per row.
    """
    if "run_id" not in arrow.column_names:
        return arrow
    column = arrow.column("run_id").combine_chunks()
    encoded = column if pa.types.is_dictionary(column.type) else column.dictionary_encode()
    keys = encoded.dictionary.to_pylist()
    if not any(STREAM_SEP in k for k in keys if k is not None):
        return arrow
    parts = [split_stream_key(k) for k in keys]
    indices = encoded.indices
    runs = pa.DictionaryArray.from_arrays(indices, pa.array([r for r, _ in parts], pa.string()))
    at = arrow.column_names.index("run_id")
    arrow = arrow.set_column(at, "run_id", runs)
    if has_stream:
        streams = pa.array([s for _, s in parts], pa.string()).take(indices)
        if "stream" in arrow.column_names:
            arrow = arrow.drop_columns(["stream"])
        arrow = arrow.append_column("stream", streams)
    return arrow


def micros(ts: float | None) -> int | None:
    return None if ts is None else int(ts * 1e6)


def clip_str(value: object) -> str | None:
    return None if value is None else str(value)[:10_000]


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and abs(value) < 2**63 else None


def as_tags(value: object) -> list[str]:
    return [str(t) for t in value] if isinstance(value, list) else []

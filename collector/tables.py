"""Pure mapping from wire sections to Arrow tables shaped like the DuckDB tables.

No I/O here: given a section and the columns a table already has, build the Arrow table
to insert and name the custom columns that must be added first.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from traindash.output import json_safe
from traindash.wire import RecordKind, Section

EPISODES = "episodes"
MODEL_METRICS = "model_metrics"
ALERTS = "alerts"
SCALARS = "scalars"
SUMMARIES = "summaries"

TABLE_OF_KIND = {
    RecordKind.EPISODE: EPISODES,
    RecordKind.MODEL: MODEL_METRICS,
    RecordKind.ALERT: ALERTS,
    RecordKind.SCALARS: SCALARS,
    RecordKind.SUMMARY: SUMMARIES,
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
}

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


def section_table(
    table: str, stream_id: str, section: Section, existing: dict[str, str]
) -> tuple[pa.Table, dict[str, str]]:
    """The Arrow table to insert for ``section`` and the new DOUBLE columns it needs.

    ``existing`` maps lower-cased column names of the DuckDB table to their names there;
    custom columns match case-insensitively, as DuckDB identifiers do.
    """
    if table == SCALARS:
        return scalars_table(stream_id, section), {}
    core = CORE_COLUMNS[table]
    n = len(section)
    arrays: dict[str, pa.Array] = {}
    new_columns: dict[str, str] = {}
    leftovers: dict[str, list] = {}
    for name, values in section.cols.items():
        key = name.lower()
        if name in core:
            arrays[name] = _convert(core[name], values)
        elif isinstance(values, np.ndarray):
            column = existing.get(key) or new_columns.setdefault(key, name)
            arrays[column] = pa.array(values.astype(np.float64, copy=False))
        else:
            leftovers[name] = values
    if table == ALERTS:
        arrays["source"] = constant(stream_id, n)
        if "run_id" not in section.cols:
            arrays["run_id"] = constant(stream_id, n)
    else:
        arrays["run_id"] = constant(stream_id, n)
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
    return pa.table(arrays), {v: "DOUBLE" for v in new_columns.values()}


def scalars_table(stream_id: str, section: Section) -> pa.Table:
    """A ``scalars`` section in long form: one row per record and name, names dictionary-encoded."""
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
    return pa.table(
        {
            "run_id": constant(stream_id, n * k),
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

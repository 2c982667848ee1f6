"""CSV and JSON output: the one writer behind every file traindash writes (docs/output.md).

File formats never round. The policy, for CSV and JSON alike:

* DOUBLE: the shortest text that reads back to the same double (Python's ``repr``):
  ``375547.624894``, ``1e-05``, ``-0.0``, ``5e-324``. FLOAT (REAL): the shortest text of
  the 32-bit value. NaN and ±Inf are data: CSV ``nan``, ``inf``, ``-inf``; JSON ``NaN``,
  ``Infinity``, ``-Infinity`` (what Python's ``json`` writes and reads).
* Integers as integers, DECIMAL with its exact digits, booleans ``true``/``false``.
* Timestamps: ISO 8601 in UTC with the offset stated (``2024-05-01T12:00:00.250000+00:00``),
  every digit of the column's unit. traindash stores naive TIMESTAMPs in UTC (the collector
  converts ``time.time()``), so naive values are written as UTC; TIMESTAMPTZ is converted.
* NULL: an empty CSV field, JSON ``null``.
* In CSV, lists, structs and maps are written as their JSON text; BLOBs as hex.

``json_safe`` is the other JSON here: strict JSON (NaN/Inf as strings) for DuckDB's JSON
columns, which accept no NaN token. It is for storage, not for output files.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

if TYPE_CHECKING:  # pyarrow is imported where a table is written: a shipper process never loads it
    import pyarrow as pa

CSV_LINE_END = "\n"
# Rows formatted per step: bounds the memory of a large export to one batch of cells.
BATCH_ROWS = 10_000
_JSON_SPECIAL = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_UTC = dt.timezone.utc


# -- one value -------------------------------------------------------------------------
def iso_utc(value: dt.datetime) -> str:
    """ISO 8601 in UTC with its offset; a naive value is taken as UTC (how traindash stores)."""
    value = value.replace(tzinfo=_UTC) if value.tzinfo is None else value.astimezone(_UTC)
    return value.isoformat(timespec="microseconds")


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def csv_cell(value: Any) -> str | None:
    """One value as CSV text; None (an empty field) for NULL."""
    value = _plain(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # floats: shortest round-trip text, and nan / inf / -inf
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple, dict)):
        return dumps(value)
    return str(value)


def json_cell(value: Any) -> str:
    """One value as a JSON fragment: exact doubles, NaN/Infinity tokens, ISO UTC timestamps."""
    value = _plain(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _json_float(value)
    if isinstance(value, Decimal) and value.is_finite():
        return str(value)  # exact digits; JSON numbers have no precision limit
    return dumps(value)


def _json_float(value: float) -> str:
    text = repr(value)
    return _JSON_SPECIAL.get(text, text)


def _default(value: Any) -> Any:
    value = _plain(value)
    if isinstance(value, dt.datetime):
        return iso_utc(value)
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple, int, float, bool)) or value is None:
        return value
    return str(value)  # Decimal inside a document, sets, paths, anything else: its text


def dumps(doc: Any, indent: int | None = None) -> str:
    """A JSON document under the output policy (NaN/Infinity kept as tokens)."""
    return json.dumps(doc, indent=indent, default=_default, allow_nan=True)


# -- Arrow columns --------------------------------------------------------------------
def _values(column: pa.Array) -> list[Any]:
    """Python values of a column, with timestamps and FLOAT formatted column-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = column.type
    if pa.types.is_timestamp(kind):
        utc = column.cast(pa.timestamp(kind.unit, "UTC"))  # naive values are UTC already
        return pc.strftime(utc, format="%Y-%m-%dT%H:%M:%S+00:00").to_pylist()
    if pa.types.is_float32(kind):
        # The shortest text of the 32-bit value, not of the double it widens to.
        return [None if v is None else float(str(np.float32(v))) for v in column.to_pylist()]
    return column.to_pylist()


def _kind(column: pa.Array) -> str:
    import pyarrow as pa

    kind = column.type
    if pa.types.is_floating(kind):
        return "float"
    if pa.types.is_integer(kind):
        return "int"
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_timestamp(kind):
        return "text"
    return "other"


def csv_cells(column: pa.Array) -> list[str | None]:
    """A column's values as CSV fields."""
    values, kind = _values(column), _kind(column)
    # The common column types skip csv_cell's chain of type tests: as fast as the old rounding writer.
    if kind == "text":
        return values
    if kind in ("float", "int"):
        fmt = float.__repr__ if kind == "float" else int.__repr__
        return [None if v is None else fmt(v) for v in values]
    return [csv_cell(v) for v in values]


def json_cells(column: pa.Array) -> list[str]:
    """A column's values as JSON fragments."""
    values, kind = _values(column), _kind(column)
    fmt = {"float": _json_float, "int": int.__repr__, "text": json.dumps}.get(kind)
    if fmt is None:
        return [json_cell(v) for v in values]
    return ["null" if v is None else fmt(v) for v in values]


def _batches(table: pa.Table) -> Iterable[pa.RecordBatch]:
    return table.to_batches(max_chunksize=BATCH_ROWS)


def write_csv(table: pa.Table, out: TextIO) -> None:
    """Write an Arrow table as CSV (header row, ``\\n`` line ends) under the output policy."""
    writer = csv.writer(out, lineterminator=CSV_LINE_END)
    writer.writerow(table.column_names)
    for batch in _batches(table):
        writer.writerows(zip(*(csv_cells(c) for c in batch.columns), strict=True))


def csv_text(table: pa.Table) -> str:
    """The CSV of an Arrow table as one string (for downloads)."""
    buf = io.StringIO()
    write_csv(table, buf)
    return buf.getvalue()


def write_json_lines(table: pa.Table, out: TextIO) -> None:
    """Write an Arrow table as JSON lines: one object per row, keys in column order."""
    keys = [json.dumps(name) + ": " for name in table.column_names]
    for batch in _batches(table):
        columns = [json_cells(c) for c in batch.columns]
        for row in zip(*columns, strict=True):
            out.write("{" + ", ".join(k + v for k, v in zip(keys, row, strict=True)) + "}\n")


def write_csv_rows(rows: Iterable[Mapping[str, Any]], out: TextIO, fields: list[str] | None = None) -> None:
    """Write dict rows as CSV; the header is ``fields`` or every key in first-seen order."""
    rows = list(rows)
    if fields is None:
        seen: dict[str, None] = {}
        for row in rows:
            seen.update(dict.fromkeys(row))
        fields = list(seen)
    writer = csv.writer(out, lineterminator=CSV_LINE_END)
    writer.writerow(fields)
    writer.writerows([csv_cell(row.get(f)) for f in fields] for row in rows)


# -- storage ---------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """A copy of ``value`` that ``json.dumps(..., allow_nan=False)`` accepts (for DuckDB JSON
    columns): NaN/Inf as strings, bytes as hex, dates as ISO."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value

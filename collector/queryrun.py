"""Running one read-only query on a worker's DuckDB cursor, inside the collector's bounds.

* One statement, SELECT-like only; file and URL access are disabled on the database
  (:class:`traindash.collector.store.Store`), which also locks the configuration.
* DuckDB's buffer manager holds sorts, joins and aggregates to ``memory_limit`` (and each
  worker's cursor to its ``operator_memory_limit``), spilling or failing past it. A single
  value built by one function call (``repeat('x', 2000000000)``, ``lpad``, a scalar
  ``range``, a ``printf`` width) is allocated outside it and cannot be interrupted halfway,
  so :func:`check_sql` refuses such calls unless their size is a constant within the
  result cap, before anything runs.
* The result is read in small Arrow batches and written to the IPC stream as it comes:
  past ``max_rows`` it is truncated, past ``max_bytes`` the query fails. For a client that
  takes parts, every ``part_bytes`` of it go out at once as an IPC stream of their own,
  while the next rows are read: the transfer overlaps the reading, and a part's memory is
  freed once it is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

BATCH_ROWS = 2048
# A framed result goes out in parts of this size (measured: 1-4 MiB parts beat 16 MiB ones
# on a 1M x 25 result; fewer, larger parts overlap less of the transfer with the reading),
# larger only past MAX_PARTS of them (queryserver.SEND_HWM keeps room for them).
PART_BYTES = 4 * 1024 * 1024
MAX_PARTS = 1024

# DuckDB evaluates a function on a vector of rows at once: a generated value of N bytes
# costs up to VECTOR_ROWS x N bytes before any check sees a row.
VECTOR_ROWS = 2048
# A column value repeated more often than this has no bound known before it runs.
MAX_REPEAT_OF_COLUMN = 64
# Functions whose result size is set by an argument: name -> that argument's index.
SIZED = {"repeat": 1, "lpad": 1, "rpad": 1, "list_resize": 1, "array_resize": 1}
# As a value (not FROM range(...), which streams rows), these build a whole list at once.
LISTS = ("range", "generate_series")
# A width or precision in the format string sizes the output.
FORMATS = ("printf", "format")
GENERATORS = (*SIZED, *LISTS, *FORMATS)
# Functions whose output can multiply the size of a generated argument.
MULTIPLIERS = (*GENERATORS, "replace", "regexp_replace")
_TEXT_GENERATOR = re.compile(r"\b(" + "|".join(GENERATORS) + r")\s*\(", re.IGNORECASE)


def value_limit(max_bytes: int) -> int:
    """The largest value one generator call may build: a vector of them stays in the cap."""
    return max(1024, max_bytes // VECTOR_ROWS)


class QueryRefused(ValueError):
    """A request that is not run at all; ``reason`` is a short tag for the counters."""

    def __init__(self, message: str, reason: str = "not-read-only") -> None:
        super().__init__(message)
        self.reason = reason


class ResultTooLarge(RuntimeError):
    """The result passed the byte cap while it was read."""


@dataclass(frozen=True)
class Answer:
    arrow: pa.Buffer  # the last part (all of it when there were no parts)
    rows: int
    truncated: bool
    parts: int = 0  # handed to ``emit`` before ``arrow``


def part_bytes(max_bytes: int) -> int:
    return max(PART_BYTES, max_bytes // MAX_PARTS)


def check_sql(cursor: duckdb.DuckDBPyConnection, sql: str, max_bytes: int) -> None:
    """Refuse anything but one read-only statement without an oversized generated value."""
    try:
        statements = cursor.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryRefused(str(exc).splitlines()[0], "parse-error") from None
    if len(statements) != 1:
        raise QueryRefused(f"one statement per query, got {len(statements)}", "not-one-statement")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise QueryRefused(f"only read-only SELECT queries are answered, not {kind.name}")
    raw = cursor.execute("SELECT json_serialize_sql($1)", [sql]).fetchall()[0][0]
    tree = json.loads(raw)
    if tree.get("error"):
        # Not every SELECT form serialises (PIVOT does not): fall back to the text.
        found = _TEXT_GENERATOR.search(sql)
        if found:
            raise QueryRefused(
                f"{found.group(1)}() cannot be checked in this form of query; rewrite it as a plain SELECT",
                "oversized-value",
            )
        return
    guard_values(tree, value_limit(max_bytes))


def guard_values(tree: Any, limit: int) -> None:
    """Walk a serialised statement; raise :class:`QueryRefused` at an oversized generator."""
    if isinstance(tree, list):
        for item in tree:
            guard_values(item, limit)
        return
    if not isinstance(tree, dict):
        return
    if tree.get("type") == "TABLE_FUNCTION" and isinstance(tree.get("function"), dict):
        # FROM range(...) streams rows; only its arguments are values.
        guard_values(tree["function"].get("arguments"), limit)
        for key, value in tree.items():
            if key != "function":
                guard_values(value, limit)
        return
    if tree.get("class") == "FUNCTION":
        _check_call(tree, limit)
    if tree.get("class") == "LAMBDA" and _contains_generator(tree):
        raise QueryRefused(
            "a generated value (repeat, lpad, range, printf, ...) inside a lambda is refused: "
            "its size is multiplied by the list's, which is not known before it runs",
            "oversized-value",
        )
    for value in tree.values():
        guard_values(value, limit)


def _args(call: dict) -> list[dict]:
    return [a.get("expression", a) for a in call.get("arguments") or []]


def _constant(node: dict) -> Any:
    """The value of a constant (through casts), or None when it is not a constant."""
    while node.get("class") == "CAST":
        node = node.get("child") or {}
    if node.get("class") != "CONSTANT":
        return None
    literal = node.get("literal") or {}
    text = literal.get("text")
    if literal.get("kind") in ("INTEGER", "BIGINT", "HUGEINT", "UBIGINT", "SMALLINT", "TINYINT"):
        try:
            return int(str(text))
        except (TypeError, ValueError):
            return None
    return text


def _contains_generator(node: Any) -> bool:
    if isinstance(node, list):
        return any(_contains_generator(n) for n in node)
    if not isinstance(node, dict):
        return False
    if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in GENERATORS:
        return True
    return any(_contains_generator(v) for v in node.values())


def _check_call(call: dict, limit: int) -> None:
    name = str(call.get("function_name", "")).lower()
    args = _args(call)
    refuse = f"{name}() is refused here"
    if name in MULTIPLIERS and _contains_generator(args):
        raise QueryRefused(
            f"{refuse}: its argument is itself a generated value, so its size cannot be "
            "bounded before it runs",
            "oversized-value",
        )
    bound = f"{limit:,} bytes (the collector's query_max_bytes / {VECTOR_ROWS})"
    if name in SIZED:
        index = SIZED[name]
        size = _constant(args[index]) if len(args) > index else None
        if not isinstance(size, int):
            raise QueryRefused(f"{refuse}: its size must be a constant", "oversized-value")
        subject = _constant(args[0]) if args else None
        if name == "repeat" and isinstance(subject, str):
            size *= max(1, len(subject.encode()))
        elif name == "repeat" and size > MAX_REPEAT_OF_COLUMN:
            raise QueryRefused(
                f"{refuse}: a value that is not a constant string may be repeated at most "
                f"{MAX_REPEAT_OF_COLUMN} times",
                "oversized-value",
            )
        elif name != "repeat":
            size *= 4 if name in ("lpad", "rpad") else 16  # UTF-8 bytes; list entries
        if size > limit:
            raise QueryRefused(f"{refuse}: it would build {size:,} bytes, over {bound}", "oversized-value")
    elif name in LISTS:
        bounds = [_constant(a) for a in args]
        if not bounds or not all(isinstance(b, int) for b in bounds):
            raise QueryRefused(
                f"{refuse} as a value unless its bounds are integer constants; "
                f"FROM {name}(...) streams rows instead",
                "oversized-value",
            )
        start, stop = (0, bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
        step = abs(bounds[2]) if len(bounds) >= 3 and bounds[2] else 1
        count = abs(stop - start) // step
        if count * 8 > limit:
            raise QueryRefused(
                f"{refuse}: a list of {count:,} values passes {bound}; FROM {name}(...) streams rows instead",
                "oversized-value",
            )
    elif name in FORMATS:
        fmt = _constant(args[0]) if args else None
        if not isinstance(fmt, str):
            raise QueryRefused(f"{refuse} unless its format string is a constant", "oversized-value")
        widths = [int(w) for w in re.findall(r"\d+", fmt)]
        if widths and max(widths) > limit:
            raise QueryRefused(f"{refuse}: a width of {max(widths):,} passes {bound}", "oversized-value")


def run_query(
    cursor: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int,
    max_bytes: int,
    emit: Callable[[pa.Buffer], None] | None = None,
) -> Answer:
    """Arrow IPC bytes of the result: at most ``max_rows`` rows, failing past ``max_bytes``.

    With ``emit``, each full part (:func:`part_bytes`) is handed to it as soon as it is
    written, and the answer holds the rest.
    """
    reader = cursor.sql(sql).to_arrow_reader(BATCH_ROWS)
    cut = part_bytes(max_bytes) if emit is not None else None
    sent = parts = rows = 0
    truncated = False
    sink = pa.BufferOutputStream()
    writer = pa.ipc.new_stream(sink, reader.schema)
    try:
        for batch in reader:
            if rows + batch.num_rows > max_rows:
                batch = batch.slice(0, max_rows - rows)
                truncated = True
            if sent + sink.tell() + batch.nbytes > max_bytes:
                raise ResultTooLarge(
                    f"the result passed the collector's cap of {max_bytes:,} bytes "
                    f"(query_max_bytes) after {rows:,} rows; select fewer columns or rows, "
                    "or aggregate"
                )
            writer.write_batch(batch)
            rows += batch.num_rows
            if truncated:
                break
            if cut is not None and emit is not None and sink.tell() >= cut:
                writer.close()
                sent += sink.tell()
                emit(sink.getvalue())
                parts += 1
                sink = pa.BufferOutputStream()
                writer = pa.ipc.new_stream(sink, reader.schema)
    finally:
        writer.close()
    return Answer(sink.getvalue(), rows, truncated, parts)


def classify(exc: BaseException) -> tuple[str, str]:
    """``(reason, message)`` for an error a query raised while it ran."""
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, duckdb.InterruptException) or "INTERRUPT" in first:
        # A recursive CTE reports its interruption as an OSError.
        return "interrupted", first
    if isinstance(exc, duckdb.OutOfMemoryException):
        return "memory-limit", (
            f"{first} (the collector's DuckDB memory limit; narrow the query or aggregate)"
        )
    return "error", first

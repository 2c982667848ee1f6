"""Groups of runs for seed and sweep comparisons (issue 17), and reading SQL from any source.

A *group* is the runs of one configuration: by default every hyperparameter but the seed
(any key whose name ends in "seed": ``seed``, ``random_seed``, ``env_seed``, ``SEED``...), or
the hyperparameter keys chosen, or the run's tags. :mod:`traindash.aggregate` compares them.
A source is anything that answers SQL: ``QueryClient``, ``ExperimentTracker``,
``traindash.connect()``, a DuckDB connection.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from traindash.query import sql_literal

HIDDEN_STATUSES = ("archived", "deleted")
LIVE_STATUSES = ("running", "stalled")
NOT_METRICS = {"run_id", "seq", "ts", "extra"}
_INTEGERS = ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "HUGEINT")
NUMERIC_TYPES: tuple[str, ...] = (
    "DOUBLE",
    "FLOAT",
    "REAL",
    "DECIMAL",
    *_INTEGERS,
    *("U" + t for t in _INTEGERS),
)
BY_TAG = "tag"


def sql_in(values: Sequence[str]) -> str:
    """``('a', 'b')``: string literals for ``IN``."""
    return "(" + ", ".join(sql_literal(v) for v in values) + ")"


def fetch(source: Any, sql: str) -> pa.Table:
    """Run ``sql`` on anything that answers SQL and return an Arrow table.

    ``source.query(sql)`` or ``source.sql(sql)`` may return a ``pyarrow.Table``, a record batch
    reader, or an object with an ``arrow`` attribute or method (a DuckDB relation, a
    ``traindash.connect()`` result).
    """
    run = getattr(source, "query", None) or getattr(source, "sql", None)
    if run is None:
        raise TypeError(f"{type(source).__name__} has neither .query(sql) nor .sql(sql)")
    table = _as_table(run(sql))
    if getattr(source, "last_truncated", False):
        raise ValueError("the collector cut the result at its row cap; ask for fewer --points or runs")
    return table


def _as_table(result: Any) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatchReader):
        return result.read_all()
    arrow = getattr(result, "arrow", None)
    if arrow is None:
        raise TypeError(f"cannot read an Arrow table from {type(result).__name__}")
    return _as_table(arrow() if callable(arrow) else arrow)


# -- groups ------------------------------------------------------------------------------------


def is_seed_key(name: str) -> bool:
    """A hyperparameter that only picks a seed (left out of the default grouping)."""
    return name.lower().endswith("seed")


@dataclass(frozen=True)
class Run:
    """One run as grouping sees it (a row of ``runs``)."""

    run_id: str
    name: str
    status: str
    hyperparameters: dict[str, Any]
    tags: tuple[str, ...]
    objective: str | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES


@dataclass
class Group:
    """Runs of one configuration; ``tasks[i]`` is the stratum of ``runs[i]`` ("" without one)."""

    label: str
    key: dict[str, Any]
    runs: list[Run] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)


def _canonical(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)  # 1 and 1.0 are the same configuration
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return str(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _order(value: Any) -> tuple[int, Any]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, _text(value))


def parse_group_by(by: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``None``/"" (every hyperparameter but the seed), "tag", or keys ("lr,gamma" or a list)."""
    if by is None:
        return None
    keys = [k.strip() for k in (by.split(",") if isinstance(by, str) else by) if k.strip()]
    return tuple(keys) or None


def group_runs(
    runs: Sequence[Run], by: str | Sequence[str] | None = None, task: str | None = None
) -> list[Group]:
    """Split runs into groups (see the module docstring); ``task`` names a hyperparameter whose
    values are the strata of the stratified bootstrap (left out of the grouping key)."""
    keys = parse_group_by(by)
    found: dict[str, Group] = {}
    for run in runs:
        hp = run.hyperparameters
        if keys == (BY_TAG,):
            key: dict[str, Any] = {BY_TAG: sorted(run.tags)}
        elif keys is not None:
            key = {k: _canonical(hp.get(k)) for k in keys}
        else:
            key = {k: _canonical(v) for k, v in hp.items() if not is_seed_key(k) and k != task}
        ident = json.dumps(key, sort_keys=True)
        group = found.setdefault(ident, Group("", key))
        group.runs.append(run)
        group.tasks.append("" if task is None else _text(hp.get(task)))
    groups = list(found.values())
    if keys == (BY_TAG,):
        shown = [BY_TAG]
    elif keys is not None:
        shown = list(keys)
    else:
        all_keys = sorted({k for g in groups for k in g.key})
        shown = [k for k in all_keys if len({_text(g.key.get(k)) for g in groups}) > 1]
        if len(groups) == 1:
            shown = all_keys
    for g in groups:
        if keys == (BY_TAG,):
            g.label = "+".join(g.key[BY_TAG]) or "untagged"
        else:
            g.label = ", ".join(f"{k}={_text(g.key.get(k))}" for k in shown) or "all runs"
        order = sorted(range(len(g.runs)), key=lambda i: (g.tasks[i], g.runs[i].run_id))
        g.runs, g.tasks = [g.runs[i] for i in order], [g.tasks[i] for i in order]
    groups.sort(key=lambda g: [_order(g.key.get(k)) for k in shown] + [g.label])
    return groups


# -- what the database has -----------------------------------------------------------------------


def columns(source: Any) -> dict[str, dict[str, tuple[str, str]]]:
    """``{table: {lower-case name: (name, type)}}`` of ``episodes`` and ``runs``, read now."""
    rows = fetch(
        source,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name IN ('episodes', 'runs')",
    ).to_pylist()
    out: dict[str, dict[str, tuple[str, str]]] = {"episodes": {}, "runs": {}}
    for r in rows:
        out[r["table_name"]][r["column_name"].lower()] = (r["column_name"], r["data_type"])
    return out


def numeric_columns(cols: dict[str, dict[str, tuple[str, str]]]) -> list[str]:
    """The ``episodes`` columns a metric or x axis can be."""
    return [
        name
        for low, (name, kind) in cols["episodes"].items()
        if low not in NOT_METRICS and kind.upper().startswith(NUMERIC_TYPES)
    ]


def metric_column(cols: dict[str, dict[str, tuple[str, str]]], name: str, what: str) -> str:
    numeric = numeric_columns(cols)
    for c in numeric:
        if c.lower() == name.lower():
            return c
    if name.lower() in cols["episodes"]:
        raise ValueError(f"episodes column {name!r} is not numeric; it cannot be {what}")
    raise ValueError(
        f"no episodes column {name!r} (to use as {what}) yet; episodes has {', '.join(numeric) or 'none'}"
    )


def load_runs(
    source: Any,
    cols: dict[str, dict[str, tuple[str, str]]],
    run_ids: Sequence[str] | None = None,
    experiments: Sequence[str] | None = None,
) -> list[Run]:
    """The trainer runs to compare: those named, else every run not archived or deleted."""
    objective = ", objective" if "objective" in cols["runs"] else ""
    where = ["coalesce(role, 'trainer') = 'trainer'"]
    if run_ids:
        where.append(f"run_id IN {sql_in(run_ids)}")
    else:
        where.append(f"coalesce(status, '') NOT IN {sql_in(HIDDEN_STATUSES)}")
    if experiments:
        where.append(f"experiment IN {sql_in(experiments)}")
    rows = fetch(
        source,
        "SELECT run_id, name, status, CAST(hyperparameters AS VARCHAR) AS hyperparameters, tags"
        f"{objective} FROM runs WHERE {' AND '.join(where)} ORDER BY started_at, run_id",
    ).to_pylist()
    missing = sorted(set(run_ids or ()) - {r["run_id"] for r in rows})
    if missing:
        raise ValueError(f"unknown run {', '.join(map(repr, missing))}; see `traindash runs`")
    runs = []
    for r in rows:
        try:
            hp = json.loads(r["hyperparameters"]) if r["hyperparameters"] else {}
        except ValueError:
            hp = {}
        runs.append(
            Run(
                r["run_id"],
                r["name"] or r["run_id"],
                r["status"] or "",
                hp if isinstance(hp, dict) else {},
                tuple(r["tags"] or ()),
                r.get("objective"),
            )
        )
    return runs

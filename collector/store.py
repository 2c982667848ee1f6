"""The DuckDB store. All SQL that writes lives here; the collector is the file's only owner.

Rows and the per-run high-water marks (``runs.acked_seq``) are committed in one
transaction, so a restarted collector never stores a re-sent record twice.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from traindash.collector.tables import (
    CORE_COLUMNS,
    MAX_CUSTOM_COLUMNS,
    TABLE_OF_KIND,
    merged,
    run_records,
    section_table,
    to_json,
    unified,
)
from traindash.wire import RecordKind, Section

log = logging.getLogger("traindash.collector.store")

SCHEMA_VERSION = 1

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    experiment VARCHAR,
    name VARCHAR,
    host VARCHAR,
    pid BIGINT,
    started_at TIMESTAMP,
    ended_at TIMESTAMP,
    status VARCHAR,
    hyperparameters JSON,
    tags VARCHAR[],
    description VARCHAR,
    acked_seq BIGINT NOT NULL DEFAULT 0,
    last_seen TIMESTAMP,
    final_metrics JSON,
    role VARCHAR DEFAULT 'trainer'
)"""

REJECTS_DDL = """
CREATE TABLE IF NOT EXISTS rejects (
    reason VARCHAR PRIMARY KEY,
    count BIGINT NOT NULL,
    last_at TIMESTAMP,
    last_sender VARCHAR,
    last_detail VARCHAR
)"""

VIEWS = [
    """CREATE OR REPLACE VIEW leaderboard AS
    SELECT r.run_id, r.experiment, r.name, r.status, r.started_at,
           count(e.seq) AS episodes, max(e.profit) AS best_profit,
           avg(e.profit) AS mean_profit, max(e.sharpe) AS best_sharpe,
           avg(e.win_rate) AS mean_win_rate, max(e.drawdown) AS max_drawdown,
           arg_max(e.profit, e.seq) AS last_profit
    FROM runs r LEFT JOIN episodes e USING (run_id)
    WHERE coalesce(r.role, 'trainer') = 'trainer'
    GROUP BY ALL""",
]


class StoreError(RuntimeError):
    """The database could not be opened or a commit failed (nothing of it was kept)."""


@dataclass
class Work:
    """What one commit writes: accepted sections, new marks, liveness; whom to ack after."""

    sections: list[tuple[str, Section]] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    acks: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.sections or self.marks or self.seen)


def _micros(ts: float | None) -> int | None:
    return None if ts is None else int(ts * 1e6)


class Store:
    """The collector's DuckDB file."""

    def __init__(self, path: Path, memory_limit: str = "1GB") -> None:
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit):
            raise StoreError(f"memory limit {memory_limit!r} is not like '512MB' or '2GB'")
        self.path = path
        try:
            self.con = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            msg = str(exc).splitlines()[0]
            if "lock" in msg.lower():
                raise StoreError(
                    f"{path} is already open in another process (is a collector already running?): {msg}"
                ) from None
            raise StoreError(f"cannot open {path}: {msg}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
        self._create_schema()
        # Reading files or URLs from SQL is never needed here; the query socket relies on
        # it, and on no query being able to change settings back.
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self.columns = {t: self._columns(t) for t in CORE_COLUMNS}
        self.known: set[str] = set()
        # DuckDB's first Arrow registration imports pandas (about a second here): pay it
        # now, not in the first commit a producer waits on.
        self.con.register("_warm_up", pa.table({"x": [0]}))
        self.con.unregister("_warm_up")
        self.overflowed: set[str] = set()  # tables whose custom-column cap was reported

    def _create_schema(self) -> None:
        c = self.con
        c.execute(RUNS_DDL)
        c.execute(REJECTS_DDL)
        for table, cols in CORE_COLUMNS.items():
            body = ", ".join(f'"{n}" {t}' for n, t in cols.items())
            c.execute(f"CREATE TABLE IF NOT EXISTS {table} ({body})")
        c.execute("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER)")
        (count,) = c.execute("SELECT count(*) FROM schema_info").fetchone() or (0,)
        if not count:
            c.execute("INSERT INTO schema_info VALUES (?)", [SCHEMA_VERSION])
        for view in VIEWS:
            c.execute(view)

    def _columns(self, table: str) -> dict[str, str]:
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
            "AND table_schema = 'main'",
            [table],
        ).fetchall()
        return {name.lower(): name for (name,) in rows}

    def marks(self) -> dict[str, int]:
        marks = dict(self.con.execute("SELECT run_id, acked_seq FROM runs").fetchall())
        self.known = set(marks)
        return marks

    def commit(self, work: Work) -> None:
        """Write ``work`` in one transaction; on failure nothing is kept."""
        c = self.con
        added: dict[str, dict[str, str]] = {}
        known = set(self.known)
        try:
            c.execute("BEGIN TRANSACTION")
            self._upsert_runs(run_records(work.sections, RecordKind.RUN))
            self._insert_all(work.sections, added)
            self._end_runs(run_records(work.sections, RecordKind.END))
            self._write_marks(work.marks, work.seen)
            c.execute("COMMIT")
        except Exception as exc:
            try:
                c.execute("ROLLBACK")
            except duckdb.Error:
                pass
            for table, cols in added.items():
                for key in cols:
                    self.columns[table].pop(key, None)
            self.known = known
            raise StoreError(f"commit failed: {str(exc).splitlines()[0]}") from exc

    def _insert_all(self, sections: list[tuple[str, Section]], added: dict[str, dict[str, str]]) -> None:
        """One INSERT per table: DuckDB's cost is per statement (and per column), not per row.

        Sections with different custom fields share the INSERT: their Arrow tables are
        unified, absent columns null. DuckDB takes one ADD COLUMN per ALTER statement, so
        each new column is one ALTER, all before the INSERT.
        """
        groups: dict[str, list[pa.Table]] = {}
        for stream_id, section in merged([item for item in sections if item[1].kind in TABLE_OF_KIND]):
            table = TABLE_OF_KIND[section.kind]
            existing = self.columns[table]
            arrow, new_cols, overflow = section_table(table, stream_id, section, existing)
            for name, sqltype in new_cols.items():
                self.con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {sqltype}')
                existing[name.lower()] = name
                added.setdefault(table, {})[name.lower()] = name
            if overflow and table not in self.overflowed:
                self.overflowed.add(table)
                log.warning(
                    "%s has %d custom columns, the most it takes; further custom names (%s, ...) "
                    "are kept in its JSON column instead",
                    table,
                    MAX_CUSTOM_COLUMNS,
                    overflow[0],
                )
            groups.setdefault(table, []).append(arrow)
        for table, parts in groups.items():
            for arrow in unified(parts):
                self.con.register("_incoming", arrow)
                try:
                    self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
                finally:
                    self.con.unregister("_incoming")

    # One statement per commit for all runs' starts, one for all their ends: a statement
    # per record took 4-20 ms each, and a thousand streams that start (or end) together
    # held the commit for seconds.
    def _upsert_runs(self, rows: dict[str, dict]) -> None:
        if not rows:
            return
        self.known.update(rows)
        ts = [_micros(r.get("ts")) for r in rows.values()]
        arrow = pa.table(
            {
                "run_id": list(rows),
                "experiment": [_str(r.get("experiment")) for r in rows.values()],
                "name": [_str(r.get("name")) for r in rows.values()],
                "host": [_str(r.get("host")) for r in rows.values()],
                "pid": pa.array([_int(r.get("pid")) for r in rows.values()], pa.int64()),
                "started_at": pa.array(ts, pa.int64()),
                "hyperparameters": [to_json(r.get("hyperparameters") or {}) for r in rows.values()],
                "tags": pa.array([_tags(r.get("tags")) for r in rows.values()], pa.list_(pa.string())),
                "description": [_str(r.get("description")) or "" for r in rows.values()],
                "role": [_str(r.get("role")) or "trainer" for r in rows.values()],
            }
        )
        self.con.register("_run_starts", arrow)
        try:
            self.con.execute(
                """INSERT INTO runs (run_id, experiment, name, host, pid, started_at, status,
                       hyperparameters, tags, description, role, last_seen)
                   SELECT run_id, experiment, name, host, pid, make_timestamp(started_at),
                       'running', hyperparameters, tags, description, role,
                       make_timestamp(started_at)
                   FROM _run_starts
                   ON CONFLICT (run_id) DO UPDATE SET experiment = excluded.experiment,
                       name = excluded.name, host = excluded.host, pid = excluded.pid,
                       started_at = coalesce(runs.started_at, excluded.started_at),
                       status = 'running', ended_at = NULL,
                       hyperparameters = excluded.hyperparameters, tags = excluded.tags,
                       description = excluded.description, role = excluded.role,
                       last_seen = excluded.last_seen"""
            )
        finally:
            self.con.unregister("_run_starts")

    def _end_runs(self, rows: dict[str, dict]) -> None:
        if not rows:
            return
        arrow = pa.table(
            {
                "run_id": list(rows),
                "ended_at": pa.array([_micros(r.get("ts")) for r in rows.values()], pa.int64()),
                "status": [_str(r.get("status")) or "finished" for r in rows.values()],
                "final_metrics": [to_json(r.get("final_metrics") or {}) for r in rows.values()],
            }
        )
        self.con.register("_run_ends", arrow)
        try:
            self.con.execute(
                """UPDATE runs SET ended_at = make_timestamp(e.ended_at), status = e.status,
                       final_metrics = e.final_metrics
                   FROM _run_ends AS e WHERE runs.run_id = e.run_id"""
            )
        finally:
            self.con.unregister("_run_ends")

    def _write_marks(self, marks: dict[str, int], seen: dict[str, float]) -> None:
        runs = list(marks.keys() | seen.keys())
        if not runs:
            return
        new = [r for r in runs if r not in self.known]
        if new:
            # One statement: executemany costs milliseconds per run, and a thousand streams
            # that start together made the collector's first commits take seconds.
            self.con.execute(
                "INSERT INTO runs (run_id, status) SELECT unnest($1::VARCHAR[]), 'running' "
                "ON CONFLICT DO NOTHING",
                [new],
            )
            self.known.update(new)
        # A new mark or liveness stamp when given; a stalled or lost run is running again.
        set_marks = """UPDATE runs SET acked_seq = coalesce({acked}, runs.acked_seq),
                   last_seen = coalesce(make_timestamp({seen}), runs.last_seen),
                   status = CASE WHEN runs.status IN ('stalled', 'lost') THEN 'running'
                                 ELSE runs.status END"""
        if len(runs) == 1:
            # Most commits carry one run; a keyed update takes half the time of the join.
            run = runs[0]
            self.con.execute(
                set_marks.format(acked="$2", seen="$3") + " WHERE run_id = $1",
                [run, marks.get(run), _micros(seen.get(run))],
            )
            return
        self.con.execute(
            set_marks.format(acked="v.acked", seen="v.seen")
            + """ FROM (SELECT unnest($1) AS run_id, unnest($2::BIGINT[]) AS acked,
                            unnest($3::BIGINT[]) AS seen) AS v
               WHERE runs.run_id = v.run_id""",
            [runs, [marks.get(r) for r in runs], [_micros(seen.get(r)) for r in runs]],
        )

    def manage(self, action: str, run_ids: list[str]) -> list[str]:
        """Archive or delete finished runs; running ones are left alone. Returns those changed.

        A deleted run keeps its ``runs`` row (status 'deleted', its ``acked_seq``) so that a
        late re-send of its records is still recognised as a duplicate and dropped.
        """
        c = self.con
        try:
            c.execute("BEGIN TRANSACTION")
            ids = [
                r
                for (r,) in c.execute(
                    "SELECT run_id FROM runs WHERE run_id IN (SELECT unnest($1::VARCHAR[])) "
                    "AND status NOT IN ('running', 'stalled')",
                    [run_ids],
                ).fetchall()
            ]
            if ids and action == "delete":
                for table in ("episodes", "model_metrics", "alerts"):
                    c.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest($1::VARCHAR[]))", [ids])
            if ids:
                c.execute(
                    "UPDATE runs SET status = $2 WHERE run_id IN (SELECT unnest($1::VARCHAR[]))",
                    [ids, "archived" if action == "archive" else "deleted"],
                )
            c.execute("COMMIT")
        except duckdb.Error as exc:
            try:
                c.execute("ROLLBACK")
            except duckdb.Error:
                pass
            raise StoreError(f"{action} failed: {str(exc).splitlines()[0]}") from exc
        return ids

    def record_rejects(self, rows: list[tuple[str, int, float, str, str]]) -> None:
        """Persist reject counters: (reason, count, last time, last sender, last detail)."""
        self.con.executemany(
            """INSERT INTO rejects VALUES (?, ?, make_timestamp(?), ?, ?)
               ON CONFLICT (reason) DO UPDATE SET count = excluded.count,
                   last_at = excluded.last_at, last_sender = excluded.last_sender,
                   last_detail = excluded.last_detail""",
            [[r, n, _micros(t), sender, detail[:500]] for r, n, t, sender, detail in rows],
        )

    def reject_counts(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT reason, count FROM rejects").fetchall())

    def update_liveness(self, now: float, stall_after: float, lost_after: float) -> None:
        """Running runs with no sign of life become stalled, then lost."""
        self.con.execute(
            """UPDATE runs SET status = CASE
                   WHEN last_seen < make_timestamp(?) THEN 'lost' ELSE 'stalled' END
               WHERE status IN ('running', 'stalled') AND last_seen < make_timestamp(?)""",
            [_micros(now - lost_after), _micros(now - stall_after)],
        )

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def close(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.warning("checkpoint on close failed: %s", exc)
        self.con.close()


def _tags(value: object) -> list[str]:
    return [str(t) for t in value] if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return None if value is None else str(value)[:10_000]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and abs(value) < 2**63 else None

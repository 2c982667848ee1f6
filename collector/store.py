"""The DuckDB store. All SQL that writes lives here; the collector is the file's only owner.

Rows and the high-water marks are committed in one transaction, so a restarted collector
never stores a re-sent record twice. Marks are per sequencing key: a run's only writer keeps
its mark in ``runs.acked_seq``; each stream of a multi-writer run (key ``run#stream``) keeps
its own in ``streams`` (collector/streams.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from traindash import reports
from traindash.collector.migrations import MigrationError, upgrade_file
from traindash.collector.streams import Streams, is_stream
from traindash.collector.tables import (
    ALERTS,
    CORE_COLUMNS,
    MAX_CUSTOM_COLUMNS,
    SCALARS,
    TABLE_OF_KIND,
    as_int,
    as_tags,
    clip_str,
    merged,
    micros,
    overflow_scalars,
    records,
    run_records,
    section_table,
    split_streams,
    to_json,
    unified,
)
from traindash.wire import RecordKind, Section

log = logging.getLogger("traindash.collector.store")

VIEWS = [reports.LEADERBOARD_VIEW]


def _open_error(path: Path, exc: duckdb.Error) -> StoreError:
    """One line for a file that could not be opened (or migrated) by DuckDB."""
    msg = str(exc).splitlines()[0]
    if isinstance(exc, duckdb.IOException) and "lock" in msg.lower():
        return StoreError(
            f"{path} is already open in another process (is a collector already running?): {msg}"
        )
    return StoreError(f"cannot open {path}: {msg}")


class StoreError(RuntimeError):
    """The database could not be opened or a commit failed (nothing of it was kept)."""


@dataclass
class Work:
    """What one commit writes: accepted sections, new marks, liveness; whom to ack after."""

    sections: list[tuple[str, Section]] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # runs claimed by a CURVE key
    rows: int = 0
    acks: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.sections or self.marks or self.seen)


class Store:
    """The collector's DuckDB file."""

    def __init__(self, path: Path, memory_limit: str = "1GB") -> None:
        if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGT]i?B", memory_limit):
            raise StoreError(f"memory limit {memory_limit!r} is not like '512MB' or '2GB'")
        self.path = path
        try:
            # Older files are migrated (on a copy, with a backup kept) before they are opened.
            self.backup = upgrade_file(path)
            self.con = duckdb.connect(str(path))
        except MigrationError as exc:
            raise StoreError(str(exc)) from None
        except duckdb.Error as exc:
            raise _open_error(path, exc) from None
        self._create_views()
        # Reading files or URLs from SQL is never needed here; the query socket relies on
        # it, and on no query being able to change settings back.
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self.columns = {t: self._columns(t) for t in CORE_COLUMNS}
        self.known: set[str] = set()
        self.streams = Streams(self.con)
        # Called when a commit ran out of DuckDB memory, before its one retry: the query
        # server interrupts the queries that hold it, so ingest comes first.
        self.on_memory_pressure: Callable[[], None] | None = None
        # DuckDB's first Arrow registration imports pandas (about a second here): pay it
        # now, not in the first commit a producer waits on.
        self.con.register("_warm_up", pa.table({"x": [0]}))
        self.con.unregister("_warm_up")
        self.overflowed: set[str] = set()  # tables whose custom-column cap was reported

    def _create_views(self) -> None:
        # Views are derived, not versioned: made anew on every open, after the migrations.
        for view in VIEWS:
            self.con.execute(view)

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
        return {**marks, **self.streams.marks()}

    def owners(self) -> dict[str, str]:
        """Runs bound to the CURVE public key that opened them."""
        return dict(
            self.con.execute("SELECT run_id, owner_key FROM runs WHERE owner_key IS NOT NULL").fetchall()
        )

    def commit(self, work: Work) -> None:
        """Write ``work`` in one transaction; on failure nothing is kept."""
        try:
            self._commit_once(work)
        except StoreError as exc:
            if self.on_memory_pressure is None or not _out_of_memory(exc):
                raise
            log.warning("%s; queries yield DuckDB's memory and the commit is tried again", exc)
            self.on_memory_pressure()
            self._commit_once(work)

    def _commit_once(self, work: Work) -> None:
        c = self.con
        added: dict[str, dict[str, str]] = {}
        committing = False
        known = set(self.known)
        starts: dict[str, dict] = {}
        try:
            c.execute("BEGIN TRANSACTION")
            starts = run_records(work.sections, RecordKind.RUN)
            self._upsert_runs({k: r for k, r in starts.items() if not is_stream(k)})
            self.known.update(self.streams.start({k: r for k, r in starts.items() if is_stream(k)}))
            self._insert_all(work.sections, added)
            ends = run_records(work.sections, RecordKind.END)
            self._end_runs({k: r for k, r in ends.items() if not is_stream(k)})
            self.streams.end({k: r for k, r in ends.items() if is_stream(k)})
            self._upsert_alert_marks(
                [r for _, s in work.sections if s.kind is RecordKind.MARK for r in records(s)]
            )
            self._write_marks(work.marks, work.seen)
            if work.owners:
                c.executemany(
                    "UPDATE runs SET owner_key = ? WHERE run_id = ? AND owner_key IS NULL",
                    [[key, run] for run, key in work.owners.items()],
                )
            committing = True
            c.execute("COMMIT")
        except Exception as exc:
            try:
                c.execute("ROLLBACK")
            except duckdb.Error:
                pass
            if committing and self._landed(work.marks):
                # DuckDB can report a failed COMMIT (out of memory) that still took effect:
                # the marks prove it, and treating it as failed would store re-sent rows twice.
                log.warning("COMMIT reported %r, but the transaction took effect", str(exc)[:120])
                return
            for table, cols in added.items():
                for key in cols:
                    self.columns[table].pop(key, None)
            self.known = known
            self.streams.known.difference_update(k for k in starts if is_stream(k))
            raise StoreError(f"commit failed: {str(exc).splitlines()[0]}") from exc

    def _landed(self, marks: dict[str, int]) -> bool:
        if not marks:
            return False
        try:
            stored = dict(
                self.con.execute(
                    "SELECT run_id, acked_seq FROM runs WHERE run_id IN (SELECT unnest(?))", [list(marks)]
                ).fetchall()
            )
            stored.update(self.streams.landed(marks))
        except duckdb.Error:
            return False
        return all(stored.get(run_id) == mark for run_id, mark in marks.items())

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
                    "go to the long scalars table",
                    table,
                    MAX_CUSTOM_COLUMNS,
                    overflow[0],
                )
            if overflow and table != ALERTS:
                spilled = overflow_scalars(table, stream_id, section, overflow)
                groups.setdefault(SCALARS, []).append(split_streams(spilled, has_stream=True))
            if table != ALERTS:
                arrow = split_streams(arrow, has_stream="stream" in CORE_COLUMNS[table])
            groups.setdefault(table, []).append(arrow)
        for table, parts in groups.items():
            for arrow in unified(parts):
                self.con.register("_incoming", arrow)
                where = ""
                if table == ALERTS and "alert_key" in arrow.column_names:
                    # At most one row per alert key: a replayed or re-sent alert is dropped.
                    where = """ AS i WHERE i.alert_key IS NULL OR NOT EXISTS
                        (SELECT 1 FROM alerts a WHERE a.alert_key = i.alert_key)
                        QUALIFY i.alert_key IS NULL
                            OR row_number() OVER (PARTITION BY i.alert_key ORDER BY i.seq) = 1"""
                try:
                    self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming{where}")
                finally:
                    self.con.unregister("_incoming")

    # One statement per commit for all runs' starts, one for all their ends: a statement
    # per record took 4-20 ms each, and a thousand streams that start (or end) together
    # held the commit for seconds.
    def _upsert_runs(self, rows: dict[str, dict]) -> None:
        if not rows:
            return
        self.known.update(rows)
        ts = [micros(r.get("ts")) for r in rows.values()]
        arrow = pa.table(
            {
                "run_id": list(rows),
                "experiment": [clip_str(r.get("experiment")) for r in rows.values()],
                "name": [clip_str(r.get("name")) for r in rows.values()],
                "host": [clip_str(r.get("host")) for r in rows.values()],
                "pid": pa.array([as_int(r.get("pid")) for r in rows.values()], pa.int64()),
                "started_at": pa.array(ts, pa.int64()),
                "hyperparameters": [to_json(r.get("hyperparameters") or {}) for r in rows.values()],
                "tags": pa.array([as_tags(r.get("tags")) for r in rows.values()], pa.list_(pa.string())),
                "description": [clip_str(r.get("description")) or "" for r in rows.values()],
                "role": [clip_str(r.get("role")) or reports.TRAINER_ROLE for r in rows.values()],
                "objective": [clip_str(r.get("objective")) or "profit" for r in rows.values()],
            }
        )
        self.con.register("_run_starts", arrow)
        try:
            self.con.execute(
                """INSERT INTO runs (run_id, experiment, name, host, pid, started_at, status,
                       hyperparameters, tags, description, role, last_seen, objective)
                   SELECT run_id, experiment, name, host, pid, make_timestamp(started_at),
                       'running', hyperparameters, tags, description, role,
                       make_timestamp(started_at), objective
                   FROM _run_starts
                   ON CONFLICT (run_id) DO UPDATE SET experiment = excluded.experiment,
                       name = excluded.name, host = excluded.host, pid = excluded.pid,
                       started_at = coalesce(runs.started_at, excluded.started_at),
                       status = 'running', ended_at = NULL,
                       hyperparameters = excluded.hyperparameters, tags = excluded.tags,
                       description = excluded.description, role = excluded.role,
                       last_seen = excluded.last_seen, objective = excluded.objective"""
            )
        finally:
            self.con.unregister("_run_starts")

    def _end_runs(self, rows: dict[str, dict]) -> None:
        if not rows:
            return
        arrow = pa.table(
            {
                "run_id": list(rows),
                "ended_at": pa.array([micros(r.get("ts")) for r in rows.values()], pa.int64()),
                "status": [clip_str(r.get("status")) or "finished" for r in rows.values()],
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

    def _upsert_alert_marks(self, rows: list[dict]) -> None:
        """Alerts consumers' watermarks (a ``mark`` record: consumer, run_ids, evaluated_seqs),
        in one statement however many runs; a mark never moves back."""
        values: list[tuple[str, str, int, int | None]] = []
        for r in rows:
            consumer, runs, seqs = r.get("consumer"), r.get("run_ids"), r.get("evaluated_seqs")
            if isinstance(consumer, str) and isinstance(runs, list) and isinstance(seqs, list):
                values += [
                    (consumer, run, seq, micros(r.get("ts")))
                    for run, seq in zip(runs, seqs, strict=False)
                    if isinstance(run, str) and as_int(seq) is not None
                ]
        if not values:
            return
        consumers, runs, seqs, stamps = (list(col) for col in zip(*values, strict=True))
        self.con.execute(
            """INSERT INTO alert_marks
               SELECT consumer, run_id, max(seq), make_timestamp(max(ts)) FROM (
                   SELECT unnest($1::VARCHAR[]) AS consumer, unnest($2::VARCHAR[]) AS run_id,
                          unnest($3::BIGINT[]) AS seq, unnest($4::BIGINT[]) AS ts)
               GROUP BY consumer, run_id
               ON CONFLICT (consumer, run_id) DO UPDATE SET
                   evaluated_seq = greatest(alert_marks.evaluated_seq, excluded.evaluated_seq),
                   updated_at = excluded.updated_at""",
            [consumers, runs, seqs, stamps],
        )

    def _write_marks(self, marks: dict[str, int], seen: dict[str, float]) -> None:
        parents = self.streams.write_marks(marks, seen)
        marks = {k: v for k, v in marks.items() if not is_stream(k)}
        seen = {k: v for k, v in seen.items() if not is_stream(k)}
        for run, t in parents.items():
            seen[run] = max(seen.get(run, t), t)
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
                [run, marks.get(run), micros(seen.get(run))],
            )
            return
        self.con.execute(
            set_marks.format(acked="v.acked", seen="v.seen")
            + """ FROM (SELECT unnest($1) AS run_id, unnest($2::BIGINT[]) AS acked,
                            unnest($3::BIGINT[]) AS seen) AS v
               WHERE runs.run_id = v.run_id""",
            [runs, [marks.get(r) for r in runs], [micros(seen.get(r)) for r in runs]],
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
                    f"AND status NOT IN ({reports.in_list(reports.LIVE_STATUSES)})",
                    [run_ids],
                ).fetchall()
            ]
            if ids and action == "delete":
                for table in ("episodes", "model_metrics", "alerts", "scalars", "summaries", "system"):
                    c.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest($1::VARCHAR[]))", [ids])
            if ids:
                c.execute(
                    "UPDATE runs SET status = $2 WHERE run_id IN (SELECT unnest($1::VARCHAR[]))",
                    [ids, reports.STATUS_AFTER[action]],
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
            [[r, n, micros(t), sender, detail[:500]] for r, n, t, sender, detail in rows],
        )

    def reject_counts(self) -> dict[str, int]:
        return dict(self.con.execute("SELECT reason, count FROM rejects").fetchall())

    def update_liveness(self, now: float, stall_after: float, lost_after: float) -> None:
        """Running runs and streams with no sign of life become stalled, then lost.

        Each stream on its own; a run's ``last_seen`` is its newest stream's, so a run
        stays running while any of its streams is.
        """
        for table in ("runs", "streams"):
            self.con.execute(
                f"""UPDATE {table} SET status = CASE
                       WHEN last_seen < make_timestamp(?) THEN 'lost' ELSE 'stalled' END
                   WHERE status IN ({reports.in_list(reports.LIVE_STATUSES)})
                       AND last_seen < make_timestamp(?)""",
                [micros(now - lost_after), micros(now - stall_after)],
            )

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def close(self) -> None:
        try:
            self.con.execute("CHECKPOINT")
        except duckdb.Error as exc:
            log.warning("checkpoint on close failed: %s", exc)
        self.con.close()


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(
        m in text for m in ("out of memory", "could not allocate", "failed to allocate", "failed to pin")
    )

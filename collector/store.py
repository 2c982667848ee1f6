"""The DuckDB store. All SQL that writes lives here; the collector is the file's only owner.

Rows and the high-water marks are committed in one transaction, so a restarted collector
never stores a re-sent record twice. Marks are per sequencing key: a run's only writer keeps
its mark in ``runs.acked_seq``; each stream of a multi-writer run (key ``run#stream``) keeps
its own in ``streams``, and its rows are stored under the run with ``stream`` set.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa

from traindash import reports
from traindash.collector.migrations import MigrationError, upgrade_file
from traindash.collector.tables import (
    ALERTS,
    CORE_COLUMNS,
    TABLE_OF_KIND,
    constant,
    records,
    section_table,
    to_json,
)
from traindash.wire import RecordKind, Section, split_stream_key

log = logging.getLogger("traindash.collector.store")

VIEWS = [reports.LEADERBOARD_VIEW]
SEEN_EVERY = 1.0  # seconds between liveness stamps of one stream (a new mark always writes)


class StoreError(RuntimeError):
    """The database could not be opened or a commit failed (nothing of it was kept)."""


@dataclass
class Work:
    """What one commit writes: accepted sections, new marks, liveness."""

    sections: list[tuple[str, Section]] = field(default_factory=list)
    marks: dict[str, int] = field(default_factory=dict)
    seen: dict[str, float] = field(default_factory=dict)
    rows: int = 0

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
            # Older files are migrated (on a copy, with a backup kept) before they are opened.
            self.backup = upgrade_file(path)
        except MigrationError as exc:
            raise StoreError(str(exc)) from None
        except duckdb.IOException as exc:
            msg = str(exc).splitlines()[0]
            if "lock" in msg.lower():
                raise StoreError(
                    f"{path} is already open in another process (is a collector already running?): {msg}"
                ) from None
            raise StoreError(f"cannot open {path}: {msg}") from None
        except duckdb.Error as exc:
            raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from None
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
        self._create_views()
        # Reading files or URLs from SQL is never needed here; the query socket relies on
        # it, and on no query being able to change settings back.
        self.con.execute(f"SET memory_limit = '{memory_limit}'")
        self.con.execute("SET enable_external_access = false")
        self.con.execute("SET lock_configuration = true")
        self.columns = {t: self._columns(t) for t in CORE_COLUMNS}
        self.known: set[str] = set()
        self.known_streams: set[str] = set()
        self._stream_seen: dict[str, float] = {}

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
        streams = dict(self.con.execute("SELECT stream_key, acked_seq FROM streams").fetchall())
        self.known_streams = set(streams)
        return {**marks, **streams}

    def commit(self, work: Work) -> None:
        """Write ``work`` in one transaction; on failure nothing is kept."""
        c = self.con
        added: dict[str, dict[str, str]] = {}
        try:
            c.execute("BEGIN TRANSACTION")
            starts: list[tuple[str, dict]] = []
            for stream_id, section in work.sections:
                if section.kind is not RecordKind.RUN:
                    continue
                if split_stream_key(stream_id)[1] is None:
                    self._upsert_runs(stream_id, records(section))
                else:
                    starts.extend((stream_id, r) for r in records(section))
            if starts:
                self._start_streams(starts)
            self._insert_all(work.sections, added)
            for stream_id, section in work.sections:
                if section.kind is RecordKind.END:
                    self._end_runs(stream_id, records(section))
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
            raise StoreError(f"commit failed: {str(exc).splitlines()[0]}") from exc

    def _insert_all(self, sections: list[tuple[str, Section]], added: dict[str, dict[str, str]]) -> None:
        """One INSERT per table and column set: DuckDB's cost is per statement, not per row."""
        groups: dict[tuple[str, pa.Schema], list[pa.Table]] = {}
        for stream_id, section in sections:
            table = TABLE_OF_KIND.get(section.kind)
            if table is None:
                continue
            existing = self.columns[table]
            run, stream = split_stream_key(stream_id)
            arrow, new_cols = section_table(table, run, section, existing)
            if stream is not None and table != ALERTS:
                arrow = arrow.drop_columns([c for c in arrow.column_names if c == "stream"])
                arrow = arrow.append_column("stream", constant(stream, arrow.num_rows))
            for name, sqltype in new_cols.items():
                self.con.execute(f'ALTER TABLE {table} ADD COLUMN "{name}" {sqltype}')
                existing[name.lower()] = name
                added.setdefault(table, {})[name.lower()] = name
            groups.setdefault((table, arrow.schema), []).append(arrow)
        for (table, _schema), parts in groups.items():
            if len(parts) == 1:
                arrow = parts[0]
            else:
                # One chunk with shared dictionaries: DuckDB scans a table of many small
                # chunks (a fleet's streams, a row or two each) about 50x slower.
                arrow = pa.concat_tables(parts).unify_dictionaries().combine_chunks()
            self.con.register("_incoming", arrow)
            try:
                self.con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _incoming")
            finally:
                self.con.unregister("_incoming")

    def _upsert_runs(self, stream_id: str, rows: Iterable[dict]) -> None:
        self.known.add(stream_id)
        for r in rows:
            tags = r.get("tags")
            self.con.execute(
                """INSERT INTO runs (run_id, experiment, name, host, pid, started_at, status,
                       hyperparameters, tags, description, role, last_seen, objective)
                   VALUES (?, ?, ?, ?, ?, make_timestamp(?), 'running', ?, ?, ?, ?, make_timestamp(?), ?)
                   ON CONFLICT (run_id) DO UPDATE SET experiment = excluded.experiment,
                       name = excluded.name, host = excluded.host, pid = excluded.pid,
                       started_at = coalesce(runs.started_at, excluded.started_at),
                       status = 'running', ended_at = NULL,
                       hyperparameters = excluded.hyperparameters, tags = excluded.tags,
                       description = excluded.description, role = excluded.role,
                       last_seen = excluded.last_seen, objective = excluded.objective""",
                [
                    stream_id,
                    _str(r.get("experiment")),
                    _str(r.get("name")),
                    _str(r.get("host")),
                    _int(r.get("pid")),
                    _micros(r.get("ts")),
                    to_json(r.get("hyperparameters") or {}),
                    [str(t) for t in tags] if isinstance(tags, list) else [],
                    _str(r.get("description")) or "",
                    _str(r.get("role")) or reports.TRAINER_ROLE,
                    _micros(r.get("ts")),
                    _str(r.get("objective")) or "profit",
                ],
            )

    def _start_streams(self, starts: list[tuple[str, dict]]) -> None:
        """Streams' starts: their ``streams`` rows, and their runs' rows made or filled in.

        Set-based (a fleet of a thousand streams starts within a few commits): one statement
        for the streams, one per run. A run takes its fields from the first stream that
        names them (the RLlib driver's hyperparameters); a stream that names none (an
        EnvRunner) leaves them and only revives the run.
        """
        latest = {key: r for key, r in starts}
        keys = list(latest)
        parts = [split_stream_key(k) for k in keys]
        recs = [latest[k] for k in keys]
        self.con.execute(
            """INSERT INTO streams (stream_key, run_id, stream, worker, host, pid, acked_seq,
                   last_seen, status, started_at)
               SELECT k, r, s, w, h, p, 0, make_timestamp(t), 'running', make_timestamp(t)
               FROM (SELECT unnest($1::VARCHAR[]) AS k, unnest($2::VARCHAR[]) AS r,
                            unnest($3::VARCHAR[]) AS s, unnest($4::VARCHAR[]) AS w,
                            unnest($5::VARCHAR[]) AS h, unnest($6::BIGINT[]) AS p,
                            unnest($7::BIGINT[]) AS t)
               ON CONFLICT (stream_key) DO UPDATE SET worker = excluded.worker,
                   host = excluded.host, pid = excluded.pid, last_seen = excluded.last_seen,
                   status = 'running', ended_at = NULL""",
            [
                keys,
                [run for run, _ in parts],
                [stream for _, stream in parts],
                [_str(r.get("worker")) or stream for r, (_, stream) in zip(recs, parts, strict=True)],
                [_str(r.get("host")) for r in recs],
                [_int(r.get("pid")) for r in recs],
                [_micros(r.get("ts")) for r in recs],
            ],
        )
        self.known_streams.update(keys)
        by_run: dict[str, dict] = {}
        for key, r in starts:
            run = split_stream_key(key)[0]
            if run not in by_run or (r.get("hyperparameters") and not by_run[run].get("hyperparameters")):
                by_run[run] = r
        for run, r in by_run.items():
            self._upsert_parent(run, r)

    def _upsert_parent(self, run: str, r: dict) -> None:
        self.known.add(run)
        tags = r.get("tags")
        ts = _micros(r.get("ts"))
        self.con.execute(
            """INSERT INTO runs (run_id, experiment, name, host, pid, started_at, status,
                   hyperparameters, tags, description, role, last_seen, objective)
               VALUES (?, ?, ?, ?, ?, make_timestamp(?), 'running', ?, ?, ?, ?, make_timestamp(?), ?)
               ON CONFLICT (run_id) DO UPDATE SET
                   experiment = coalesce(runs.experiment, excluded.experiment),
                   name = coalesce(runs.name, excluded.name),
                   host = coalesce(runs.host, excluded.host), pid = coalesce(runs.pid, excluded.pid),
                   started_at = coalesce(runs.started_at, excluded.started_at),
                   status = 'running', ended_at = NULL,
                   hyperparameters = CASE WHEN excluded.hyperparameters::VARCHAR = '{}'
                       THEN coalesce(runs.hyperparameters, excluded.hyperparameters)
                       ELSE excluded.hyperparameters END,
                   tags = CASE WHEN len(excluded.tags) = 0 THEN runs.tags ELSE excluded.tags END,
                   description = CASE WHEN excluded.description = '' THEN runs.description
                       ELSE excluded.description END,
                   role = coalesce(runs.role, excluded.role),
                   last_seen = greatest(runs.last_seen, excluded.last_seen),
                   objective = excluded.objective""",
            [
                run,
                _str(r.get("experiment")),
                _str(r.get("name")),
                _str(r.get("host")),
                _int(r.get("pid")),
                ts,
                to_json(r.get("hyperparameters") or {}),
                [str(t) for t in tags] if isinstance(tags, list) else [],
                _str(r.get("description")) or "",
                _str(r.get("role")) or reports.TRAINER_ROLE,
                ts,
                _str(r.get("objective")) or "profit",
            ],
        )

    def _end_runs(self, stream_id: str, rows: Iterable[dict]) -> None:
        run, stream = split_stream_key(stream_id)
        if stream is not None:
            # The stream ends; its run ends with the last of its live streams.
            for r in rows:
                args = [_micros(r.get("ts")), _str(r.get("status")) or "finished"]
                self.con.execute(
                    "UPDATE streams SET ended_at = make_timestamp(?), status = ? WHERE stream_key = ?",
                    [*args, stream_id],
                )
                self.con.execute(
                    f"""UPDATE runs SET ended_at = make_timestamp(?), status = ?
                       WHERE run_id = ? AND NOT EXISTS (SELECT 1 FROM streams s
                           WHERE s.run_id = ? AND s.status IN ({reports.in_list(reports.LIVE_STATUSES)}))""",
                    [*args, run, run],
                )
            return
        for r in rows:
            self.con.execute(
                "UPDATE runs SET ended_at = make_timestamp(?), status = ?, final_metrics = ? "
                "WHERE run_id = ?",
                [
                    _micros(r.get("ts")),
                    _str(r.get("status")) or "finished",
                    to_json(r.get("final_metrics") or {}),
                    stream_id,
                ],
            )

    def _write_marks(self, marks: dict[str, int], seen: dict[str, float]) -> None:
        streams = {k for k in marks.keys() | seen.keys() if split_stream_key(k)[1] is not None}
        if streams:
            # A fleet's heartbeats: a stream's stamp is written at most every SEEN_EVERY
            # seconds unless its mark moves (liveness is judged in seconds, not per beat).
            fresh = {
                k: t
                for k, t in seen.items()
                if k in streams and (k in marks or t - self._stream_seen.get(k, -SEEN_EVERY) >= SEEN_EVERY)
            }
            keys = [k for k in streams if k in marks or k in fresh]
            if keys:
                self._write_stream_marks(keys, marks, fresh)
                self._stream_seen.update(fresh)
            # A stream's sign of life is its run's too (the run lives while any stream does).
            parents: dict[str, float] = {}
            for k, t in fresh.items():
                run = split_stream_key(k)[0]
                parents[run] = max(parents.get(run, 0.0), t)
            seen = {**{k: v for k, v in seen.items() if k not in streams}, **parents}
            marks = {k: v for k, v in marks.items() if k not in streams}
        runs = list(marks.keys() | seen.keys())
        if not runs:
            return
        new = [r for r in runs if r not in self.known]
        if new:
            self.con.executemany(
                "INSERT INTO runs (run_id, status) VALUES (?, 'running') ON CONFLICT DO NOTHING",
                [[r] for r in new],
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

    def _write_stream_marks(self, keys: list[str], marks: dict[str, int], seen: dict[str, float]) -> None:
        new = [k for k in keys if k not in self.known_streams]
        if new:
            self.con.executemany(
                "INSERT INTO streams (stream_key, run_id, stream, worker, status) "
                "VALUES (?, ?, ?, ?, 'running') ON CONFLICT DO NOTHING",
                [[k, *split_stream_key(k), split_stream_key(k)[1]] for k in new],
            )
            self.known_streams.update(new)
        self.con.execute(
            """UPDATE streams SET acked_seq = coalesce(v.acked, streams.acked_seq),
                   last_seen = coalesce(make_timestamp(v.seen), streams.last_seen),
                   status = CASE WHEN streams.status IN ('stalled', 'lost') THEN 'running'
                                 ELSE streams.status END
               FROM (SELECT unnest($1) AS k, unnest($2::BIGINT[]) AS acked,
                            unnest($3::BIGINT[]) AS seen) AS v
               WHERE streams.stream_key = v.k""",
            [keys, [marks.get(k) for k in keys], [_micros(seen.get(k)) for k in keys]],
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
                for table in ("episodes", "model_metrics", "alerts", "scalars", "summaries"):
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
            [[r, n, _micros(t), sender, detail[:500]] for r, n, t, sender, detail in rows],
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


def _str(value: object) -> str | None:
    return None if value is None else str(value)[:10_000]


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and abs(value) < 2**63 else None

"""Streams: the several writers of one run (an RLlib EnvRunner each, a rank each).

A stream's sequencing key is ``run#stream``; its mark, liveness and identity live in the
``streams`` table, and its rows are stored under the run with ``stream`` set (see
``tables.split_streams``). A one-writer run has no ``streams`` row: its key is the run id and
its mark stays in ``runs.acked_seq``. Everything here runs inside the store's commit
transaction, on the store's connection.
"""

from __future__ import annotations

import duckdb

from traindash import reports
from traindash.collector.tables import as_int, as_tags, clip_str, micros, to_json
from traindash.wire import split_stream_key

SEEN_EVERY = 1.0  # seconds between liveness stamps of one stream (a new mark always writes)


def is_stream(key: str) -> bool:
    return split_stream_key(key)[1] is not None


class Streams:
    """The ``streams`` table as the store's commit writes it."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.known: set[str] = set()
        self._seen: dict[str, float] = {}

    def marks(self) -> dict[str, int]:
        marks = dict(self.con.execute("SELECT stream_key, acked_seq FROM streams").fetchall())
        self.known = set(marks)
        return marks

    def landed(self, marks: dict[str, int]) -> dict[str, int]:
        """The stored marks of the streams among ``marks``."""
        keys = [k for k in marks if is_stream(k)]
        if not keys:
            return {}
        return dict(
            self.con.execute(
                "SELECT stream_key, acked_seq FROM streams WHERE stream_key IN (SELECT unnest(?))", [keys]
            ).fetchall()
        )

    def start(self, starts: dict[str, dict]) -> set[str]:
        """Streams' starts: their ``streams`` rows, and their runs' rows made or filled in.

        One statement for the streams, one per run. A run takes its fields from the first
        stream that names them (the RLlib driver's hyperparameters); a stream that names
        none (an EnvRunner) leaves them and only revives the run. Returns the runs touched.
        """
        if not starts:
            return set()
        keys = list(starts)
        parts = [split_stream_key(k) for k in keys]
        recs = [starts[k] for k in keys]
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
                [clip_str(r.get("worker")) or stream for r, (_, stream) in zip(recs, parts, strict=True)],
                [clip_str(r.get("host")) for r in recs],
                [as_int(r.get("pid")) for r in recs],
                [micros(r.get("ts")) for r in recs],
            ],
        )
        self.known.update(keys)
        by_run: dict[str, dict] = {}
        for key, r in starts.items():
            run = split_stream_key(key)[0]
            if run not in by_run or (r.get("hyperparameters") and not by_run[run].get("hyperparameters")):
                by_run[run] = r
        for run, r in by_run.items():
            self._upsert_run(run, r)
        return set(by_run)

    def _upsert_run(self, run: str, r: dict) -> None:
        ts = micros(r.get("ts"))
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
                clip_str(r.get("experiment")),
                clip_str(r.get("name")),
                clip_str(r.get("host")),
                as_int(r.get("pid")),
                ts,
                to_json(r.get("hyperparameters") or {}),
                as_tags(r.get("tags")),
                clip_str(r.get("description")) or "",
                clip_str(r.get("role")) or reports.TRAINER_ROLE,
                ts,
                clip_str(r.get("objective")) or "profit",
            ],
        )

    def end(self, ends: dict[str, dict]) -> None:
        """Streams end; a run ends with the last of its live streams (taking that end's status).

        Two statements however many streams end together (a fleet closing at once).
        """
        if not ends:
            return
        keys = list(ends)
        stamps = [micros(ends[k].get("ts")) for k in keys]
        statuses = [clip_str(ends[k].get("status")) or "finished" for k in keys]
        self.con.execute(
            """UPDATE streams SET ended_at = make_timestamp(v.t), status = v.s
               FROM (SELECT unnest($1::VARCHAR[]) AS k, unnest($2::BIGINT[]) AS t,
                            unnest($3::VARCHAR[]) AS s) AS v
               WHERE streams.stream_key = v.k""",
            [keys, stamps, statuses],
        )
        last = {split_stream_key(k)[0]: (t, st) for k, t, st in zip(keys, stamps, statuses, strict=True)}
        runs = list(last)
        self.con.execute(
            f"""UPDATE runs SET ended_at = make_timestamp(v.t), status = v.s
               FROM (SELECT unnest($1::VARCHAR[]) AS r, unnest($2::BIGINT[]) AS t,
                            unnest($3::VARCHAR[]) AS s) AS v
               WHERE runs.run_id = v.r AND NOT EXISTS (SELECT 1 FROM streams s
                   WHERE s.run_id = v.r AND s.status IN ({reports.in_list(reports.LIVE_STATUSES)}))""",
            [runs, [last[r][0] for r in runs], [last[r][1] for r in runs]],
        )

    def write_marks(self, marks: dict[str, int], seen: dict[str, float]) -> dict[str, float]:
        """Write the streams' marks and liveness among ``marks``/``seen``; returns the liveness
        stamps their runs take (a stream's sign of life is its run's too).

        A fleet's heartbeats: a stream's stamp is written at most every SEEN_EVERY seconds
        unless its mark moves (liveness is judged in seconds, not per beat).
        """
        streams = {k for k in marks.keys() | seen.keys() if is_stream(k)}
        if not streams:
            return {}
        fresh = {
            k: t
            for k, t in seen.items()
            if k in streams and (k in marks or t - self._seen.get(k, -SEEN_EVERY) >= SEEN_EVERY)
        }
        keys = [k for k in streams if k in marks or k in fresh]
        if keys:
            self._write(keys, marks, fresh)
            self._seen.update(fresh)
        parents: dict[str, float] = {}
        for k, t in fresh.items():
            run = split_stream_key(k)[0]
            parents[run] = max(parents.get(run, 0.0), t)
        return parents

    def _write(self, keys: list[str], marks: dict[str, int], seen: dict[str, float]) -> None:
        new = [k for k in keys if k not in self.known]
        if new:
            parts = [split_stream_key(k) for k in new]
            self.con.execute(
                "INSERT INTO streams (stream_key, run_id, stream, worker, status) "
                "SELECT unnest($1::VARCHAR[]), unnest($2::VARCHAR[]), unnest($3::VARCHAR[]), "
                "unnest($3::VARCHAR[]), 'running' ON CONFLICT DO NOTHING",
                [new, [r for r, _ in parts], [s for _, s in parts]],
            )
            self.known.update(new)
        self.con.execute(
            """UPDATE streams SET acked_seq = coalesce(v.acked, streams.acked_seq),
                   last_seen = coalesce(make_timestamp(v.seen), streams.last_seen),
                   status = CASE WHEN streams.status IN ('stalled', 'lost') THEN 'running'
                                 ELSE streams.status END
               FROM (SELECT unnest($1) AS k, unnest($2::BIGINT[]) AS acked,
                            unnest($3::BIGINT[]) AS seen) AS v
               WHERE streams.stream_key = v.k""",
            [keys, [marks.get(k) for k in keys], [micros(seen.get(k)) for k in keys]],
        )

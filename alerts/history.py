"""What the alerts service reads back through the query socket: runs, marks, rows, state.

Everything here is a read-only query answered by the collector. Rule state is rebuilt from
the stored data as of a watermark ``W`` (a run's seq): counts and the best objective from
SQL aggregates, conditions already announced and cooldowns from the keyed rows of the
``alerts`` table, and the latest values and custom-rule streaks by re-evaluating, silently,
the few rows just before ``W``.

Everything is per sequencing key (see :mod:`alerts.follow`): a run's only writer (key = the
run id, rows with ``stream IS NULL``, mark in ``runs.acked_seq``) or one stream of a
multi-writer run (key ``run#stream``, rows with ``stream`` set, mark in ``streams.acked_seq``).
Rule state is kept per key: each stream is evaluated as its own series.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from traindash.alerts.rules import Alert, RuleEngine
from traindash.query import QueryClient, sql_literal
from traindash.wire import RecordKind, split_stream_key, stream_key

PAGE_ROWS = 20_000
STATUS_RULES = ("trainer_stalled", "trainer_lost", "trainer_recovered")
# Events, not conditions: nothing to announce, nothing that recovers.
EVENT_RULES = frozenset({"new_best", "training_complete", "training_crashed", *STATUS_RULES})
ENDED = frozenset({"finished", "crashed"})
_Q_SUMMARY = ("q_mean", "q_std", "q_min", "q_max")


@dataclass(frozen=True)
class RunInfo:
    """A run as the ``runs`` table has it now; or one stream of a run as ``streams`` has it
    (its mark, liveness and end), with its run's role and name."""

    run_id: str
    role: str
    name: str | None
    status: str | None
    acked_seq: int
    last_seen_us: int | None
    ended_at: float | None
    final_metrics: dict[str, Any]
    started_at: float | None = None
    stream: str | None = None

    @property
    def trainer(self) -> bool:
        return self.role == "trainer"

    @property
    def key(self) -> str:
        """The sequencing key: the run id, or ``run#stream``."""
        return stream_key(self.run_id, self.stream)


_RUN_COLUMNS = (
    "run_id, NULL::VARCHAR AS stream, coalesce(role, 'trainer') AS role, name, status, acked_seq, "
    "epoch_us(last_seen) AS last_seen_us, epoch_us(ended_at) / 1e6 AS ended_at, "
    "CAST(final_metrics AS VARCHAR) AS final_metrics, epoch_us(started_at) / 1e6 AS started_at"
)
_STREAM_COLUMNS = (
    "s.run_id, s.stream, coalesce(r.role, 'trainer') AS role, r.name, s.status, s.acked_seq, "
    "epoch_us(s.last_seen) AS last_seen_us, epoch_us(s.ended_at) / 1e6 AS ended_at, "
    "NULL::VARCHAR AS final_metrics, epoch_us(s.started_at) / 1e6 AS started_at"
)
_STREAMS = "streams s LEFT JOIN runs r ON r.run_id = s.run_id"


def owned(key: str) -> str:
    """SQL: the rows of a sequencing key. A run's only writer leaves ``stream`` NULL; a run
    with no ``streams`` row owns all its rows (an older file's custom "stream" column, which
    migration v5 keeps, holds something else)."""
    run_id, stream = split_stream_key(key)
    run = sql_literal(run_id)
    if stream is not None:
        return f"run_id = {run} AND stream = {sql_literal(stream)}"
    return f"run_id = {run} AND (stream IS NULL OR {run} NOT IN (SELECT run_id FROM streams))"


def _alerts_of(key: str) -> str:
    """SQL: the keyed alerts of a sequencing key (stored under its run, keyed ``key:...``)."""
    run_id = split_stream_key(key)[0]
    return f"run_id = {sql_literal(run_id)} AND starts_with(alert_key, {sql_literal(key + ':')})"


def _run_info(row: dict[str, Any]) -> RunInfo:
    try:
        final = json.loads(row["final_metrics"]) if row["final_metrics"] else {}
    except ValueError:
        final = {}
    return RunInfo(
        row["run_id"],
        row["role"],
        row["name"],
        row["status"],
        int(row["acked_seq"] or 0),
        row["last_seen_us"],
        row["ended_at"],
        final if isinstance(final, dict) else {},
        row["started_at"],
        row["stream"],
    )


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row as the live feed has it: NULL means the field was not logged."""
    return {k: v for k, v in row.items() if v is not None}


def clean_model_row(row: dict[str, Any]) -> dict[str, Any]:
    """Drop what the wire fills with NaN for "not logged": the Q summary when no Q-values
    were logged, gradient stats when no gradients were (a NaN gradient looks the same)."""
    if row.get("q_values") is None:
        for k in _Q_SUMMARY:
            row.pop(k, None)
    for k in ("grad_mean", "grad_std"):
        v = row.get(k)
        if isinstance(v, float) and math.isnan(v):
            row.pop(k)
    return row


def status_marker(last_seen_us: int | None) -> str:
    """What a stalled/lost alert is keyed on: the last sign of life it is about."""
    return f"hb{last_seen_us or 0}"


def alert_key(run_id: str, rule: str, marker: str) -> str:
    """The key of an alert: its run, its rule and the row (or stall) that fired it."""
    return f"{run_id}:{rule}:{marker}"


class History:
    """Read-only SQL for the alerts service, through a :class:`QueryClient`."""

    def __init__(self, client: QueryClient, consumer: str) -> None:
        self.client = client
        self.consumer = consumer

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        return self.client.query(sql).to_pylist()

    # -- runs and marks ------------------------------------------------------------------------
    def runs(self) -> list[RunInfo]:
        """Every run, and every stream of a multi-writer run."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs UNION ALL SELECT {_STREAM_COLUMNS} FROM {_STREAMS}"
        return [_run_info(r) for r in self._rows(sql)]

    def run(self, key: str) -> RunInfo | None:
        """The run, or the stream, of a sequencing key."""
        if split_stream_key(key)[1] is None:
            sql = f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = {sql_literal(key)}"
        else:
            sql = f"SELECT {_STREAM_COLUMNS} FROM {_STREAMS} WHERE s.stream_key = {sql_literal(key)}"
        rows = self._rows(sql)
        return _run_info(rows[0]) if rows else None

    def marks(self) -> tuple[dict[str, int], int]:
        """This consumer's watermarks, and when it first started (its ``*`` mark; 0 if never)."""
        rows = self._rows(
            "SELECT run_id, evaluated_seq, epoch_us(updated_at) AS at FROM alert_marks "
            f"WHERE consumer = {sql_literal(self.consumer)}"
        )
        since = next((int(r["at"] or 0) for r in rows if r["run_id"] == "*"), 0)
        return {r["run_id"]: int(r["evaluated_seq"]) for r in rows if r["run_id"] != "*"}, since

    def status_alerts(self) -> dict[str, list[dict[str, Any]]]:
        """Keyed stalled/lost/recovered alerts, per run, oldest first."""
        rules = ", ".join(sql_literal(r) for r in STATUS_RULES)
        out: dict[str, list[dict[str, Any]]] = {}
        for r in self._rows(
            f"SELECT run_id, rule, alert_key, title, message, level, epoch_us(ts) / 1e6 AS ts "
            f"FROM alerts WHERE alert_key IS NOT NULL AND rule IN ({rules}) ORDER BY ts, seq"
        ):
            out.setdefault(r["run_id"], []).append(r)
        return out

    # -- rows ------------------------------------------------------------------------------------
    def rows(
        self, key: str, after: int, upto: int, limit: int = PAGE_ROWS
    ) -> tuple[list[tuple[int, RecordKind, dict]], int]:
        """Episode and model rows of a key with ``after < seq <= upto``, in seq order, a page at
        a time: returns the rows and the seq up to which the page is complete."""
        where = f"{owned(key)} AND seq > {int(after)} AND seq <= {int(upto)}"
        out: list[tuple[int, RecordKind, dict]] = []
        complete = upto
        for table, kind in (("episodes", RecordKind.EPISODE), ("model_metrics", RecordKind.MODEL)):
            rows = self._rows(
                f"SELECT * EXCLUDE (run_id, stream, ts, extra), epoch_us(ts) / 1e6 AS ts FROM {table} "
                f"WHERE {where} ORDER BY seq LIMIT {int(limit)}"
            )
            if len(rows) == limit:  # cut: beyond its last seq this table may hold more
                complete = min(complete, int(rows[-1]["seq"]))
            out.extend((int(r["seq"]), kind, _plain(r)) for r in rows)
        out.sort(key=lambda item: item[0])
        return [item for item in out if item[0] <= complete], complete

    def recorded_keys(self, key: str, after: int) -> set[str]:
        """Keys already in the ``alerts`` table for rows after ``after`` (and row-less ones)."""
        rows = self._rows(
            f"SELECT alert_key FROM alerts WHERE {_alerts_of(key)} "
            f"AND (row_seq > {int(after)} OR row_seq IS NULL)"
        )
        return {r["alert_key"] for r in rows}

    # -- state ---------------------------------------------------------------------------------
    def rebuild(self, engine: RuleEngine, info: RunInfo, upto: int, warm_rows: int) -> None:
        """Make ``engine``'s state of the run what evaluating every row up to ``upto`` left."""
        run_id, own = info.key, owned(info.key)
        old = engine.runs.get(run_id)
        engine.forget(run_id)
        st = engine.state(run_id)
        st.name, st.role = info.name, info.role
        if info.trainer and upto > 0:
            warm = self._rows(
                f"SELECT * EXCLUDE (run_id, stream, ts, extra), epoch_us(ts) / 1e6 AS ts FROM episodes "
                f"WHERE {own} AND seq <= {int(upto)} ORDER BY seq DESC LIMIT {int(warm_rows)}"
            )
            low = min((r["seq"] for r in warm), default=upto)
            model = self._rows(
                f"SELECT * EXCLUDE (run_id, stream, ts, extra), epoch_us(ts) / 1e6 AS ts FROM model_metrics "
                f"WHERE {own} AND seq <= {int(upto)} AND (seq >= {int(low)} OR seq = "
                f"(SELECT max(seq) FROM model_metrics WHERE {own} AND seq <= {int(upto)})) "
                "ORDER BY seq DESC LIMIT 1000"
            )
            merged = sorted(
                [(r["seq"], RecordKind.EPISODE, _plain(r)) for r in warm]
                + [(r["seq"], RecordKind.MODEL, clean_model_row(_plain(r))) for r in model],
                key=lambda item: item[0],
            )
            for _seq, kind, row in merged:  # silently: latest values, NaN state, streaks
                if kind is RecordKind.EPISODE:
                    engine.on_episode(run_id, row, row["ts"])
                else:
                    engine.on_model(run_id, row, row["ts"])
            self._counts(engine, info, upto)
        engine.throttle.forget(lambda key: key[0] == run_id)
        st.announced.clear()
        self._alerts_so_far(engine, info, upto)
        st.ended = info.ended_at is not None and upto >= info.acked_seq
        if old is not None:  # liveness is the status poll's, not the rows'
            st.status = old.status
            st.announced.update({r: a for r, a in old.announced.items() if r in STATUS_RULES})

    def _counts(self, engine: RuleEngine, info: RunInfo, upto: int) -> None:
        row = self._rows(
            f"""WITH e AS (SELECT seq, profit, row_number() OVER (ORDER BY seq) AS n FROM episodes
                 WHERE {owned(info.key)} AND seq <= {int(upto)}),
                 b AS (SELECT max(profit) FILTER (WHERE isfinite(profit)) AS best FROM e)
               SELECT count(*) AS episodes, any_value(b.best) AS best,
                      min(e.n) FILTER (WHERE e.profit = b.best) AS best_at
               FROM e, b"""
        )[0]
        st = engine.state(info.key)
        st.episodes = int(row["episodes"] or 0)
        best = row["best"]
        st.best_profit = float(best) if best is not None else -math.inf
        st.best_at = int(row["best_at"] or 0)

    def _alerts_so_far(self, engine: RuleEngine, info: RunInfo, upto: int) -> None:
        """Announced conditions and cooldowns from the keyed alerts of rows up to ``upto``."""
        run_id = info.key
        rows = self._rows(
            "SELECT rule, level, title, message, row_seq, epoch_us(ts) / 1e6 AS ts FROM alerts "
            f"WHERE {_alerts_of(run_id)} "
            f"AND (row_seq <= {int(upto)} OR row_seq IS NULL) ORDER BY coalesce(row_seq, 0), ts"
        )
        st = engine.state(run_id)
        for r in rows:
            engine.throttle.mark((run_id, r["rule"]), r["ts"])
            if r["row_seq"] is None:
                continue
            rule = str(r["rule"])
            if rule in ("training_complete", "training_crashed"):
                st.announced.clear()  # an end resets every condition (RuleEngine.on_end)
            elif rule.endswith(".recovered"):
                st.announced.pop(rule.removesuffix(".recovered"), None)
            elif rule not in EVENT_RULES:
                st.announced[rule] = Alert(r["level"], rule, r["title"], r["message"], run_id, {}, r["ts"])

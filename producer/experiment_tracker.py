"""ExperimentTracker: the guide's experiment API on top of the traindash pipeline.

An experiment is a run: ``create_experiment`` opens a :class:`MetricsLogger` whose
``run_id`` is the experiment id, so its name, hyperparameters, tags and description land in
the ``runs`` table and its results in ``episodes``. Comparisons and leaderboards are SQL over
DuckDB, through the collector's query socket (or the file, read-only, when none runs).
Snapshots (``save_experiment``, archives, comparison exports) are files in ``experiments_dir``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from traindash import config as tdconfig
from traindash import reports, wire
from traindash.output import dumps, write_csv_rows
from traindash.producer.logger import MetricsLogger, summary_metrics
from traindash.query import CollectorUnavailable, QueryClient, QueryError, run_sql, sql_literal
from traindash.reports import comparison_rows

FLUSH_TIMEOUT = 10.0


class ExperimentError(KeyError):
    """An experiment id that is not known (to this tracker, its directory or the database)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def manage_runs(query_endpoint: str, action: str, run_ids: Sequence[str], timeout: float = 10.0) -> list[str]:
    """Ask the collector to ``archive`` or ``delete`` runs; returns the ids it changed.

    Only the collector writes DuckDB, so this is a request on its query socket: a
    ``wire.Manage(action, run_ids)`` message answered by a ``wire.Result`` whose Arrow table
    has a ``run_id`` column (the runs changed) or a ``wire.Error``. ``archive`` sets a
    finished run's status to ``archived``; ``delete`` removes its episodes, model metrics and
    alerts and sets its status to ``deleted``; running runs are refused.
    """
    if action not in wire.MANAGE_ACTIONS:
        raise ValueError(f"action must be one of {', '.join(wire.MANAGE_ACTIONS)}")
    with QueryClient(query_endpoint, timeout) as client:
        try:
            reply = client.request(wire.Manage(action, tuple(run_ids)))
        except CollectorUnavailable:
            raise QueryError(
                f"no collector answered at {query_endpoint} within {timeout:g} s; "
                f"runs can only be {action}d through a running collector"
            ) from None
    return [str(r) for r in pa.ipc.open_stream(reply.arrow).read_all().column("run_id").to_pylist()]


class ExperimentTracker:
    """Tracks experiments (runs) and compares them: the guide's ``ExperimentTracker``.

    Args:
        experiments_dir: where snapshots, archives, exports and the experiments' spools go.
        config: endpoints and intervals for the experiments' loggers; by default from
            ``TRAINDASH_*`` variables.
        db: the DuckDB file to read when no collector answers (default ``TRAINDASH_DB`` or
            ``traindash.duckdb``).
        timeout: seconds to wait for the collector's query socket.
        auto_save: ``complete_experiment`` also writes the experiment's snapshot.
    """

    def __init__(
        self,
        experiments_dir: str = "experiments",
        *,
        config: tdconfig.ProducerConfig | None = None,
        db: str | Path | None = None,
        timeout: float = 10.0,
        auto_save: bool = True,
    ) -> None:
        self.experiments_dir = Path(experiments_dir)
        self.config = config or tdconfig.ProducerConfig.resolve()
        self.db = Path(db) if db is not None else tdconfig.CollectorConfig.resolve().db
        self.timeout = timeout
        self.auto_save = auto_save
        self._loggers: dict[str, MetricsLogger] = {}

    # -- SQL -----------------------------------------------------------------------------
    def query(self, sql: str) -> pa.Table:
        """Run read-only SQL through the collector (or the DuckDB file when none runs)."""
        return run_sql(sql, self.config.endpoints.query, self.db, self.timeout)

    def _rows(self, sql: str) -> list[dict[str, Any]]:
        return self.query(sql).to_pylist()

    def _flush(self, exp_ids: Iterable[str] | None = None) -> None:
        ids = self._loggers.keys() if exp_ids is None else exp_ids
        for exp_id in list(ids):
            logger = self._loggers.get(exp_id)
            if logger is not None and not logger.is_closed():
                logger.flush(timeout=FLUSH_TIMEOUT)

    def _metric_columns(self, metrics: Sequence[str] | None) -> list[str]:
        columns = [r["column_name"] for r in self._rows(reports.EPISODE_COLUMNS_SQL)]
        return reports.metric_columns(columns, metrics)

    # -- experiments -----------------------------------------------------------------------
    def create_experiment(
        self,
        name: str,
        hyperparameters: dict[str, Any] | None = None,
        description: str = "",
        tags: list[str] | None = None,
    ) -> str:
        """Start an experiment (a run in the pipeline); returns its id, the run's ``run_id``."""
        logger = MetricsLogger(
            name,
            output_dir=str(self.experiments_dir),
            name=name,
            hyperparameters=dict(hyperparameters or {}),
            tags=list(tags or []),
            description=description,
            config=self.config,
        )
        self._loggers[logger.run_id] = logger
        self._write_meta(
            logger.run_id,
            {
                "exp_id": logger.run_id,
                "name": name,
                "hyperparameters": hyperparameters or {},
                "description": description,
                "tags": list(tags or []),
                "status": "running",
                "created_at": time.time(),
            },
        )
        return logger.run_id

    def logger(self, exp_id: str) -> MetricsLogger:
        """The MetricsLogger of an open experiment (resumed if it was created in this
        directory by an earlier tracker)."""
        found = self._loggers.get(exp_id)
        if found is not None and not found.is_closed():
            return found
        meta = self._read_meta(exp_id)
        if meta is None or found is not None:
            raise ExperimentError(f"no open experiment {exp_id!r} in {self.experiments_dir}")
        resumed = MetricsLogger(
            meta["name"],
            output_dir=str(self.experiments_dir),
            run_id=exp_id,
            name=meta["name"],
            hyperparameters=meta.get("hyperparameters") or {},
            tags=meta.get("tags") or [],
            description=meta.get("description", ""),
            config=self.config,
        )
        self._loggers[exp_id] = resumed
        return resumed

    def log_result(self, exp_id: str, episode: int, **metrics: Any) -> None:
        """Log one episode's results; ``profit`` is NaN when not given."""
        profit = metrics.pop("profit", math.nan)
        self.logger(exp_id).log_episode(episode, profit, **metrics)

    def complete_experiment(self, exp_id: str, final_metrics: dict[str, Any] | None = None) -> None:
        """End the experiment's run with its final metrics (and save it when auto_save)."""
        logger = self.logger(exp_id)
        stats = logger.get_statistics()
        final = summary_metrics(stats)
        final.update(final_metrics or {})
        logger.close(status="finished", final_metrics=final)
        meta = self._read_meta(exp_id) or {"exp_id": exp_id}
        meta.update(status="completed", completed_at=time.time(), final_metrics=final)
        self._write_meta(exp_id, meta)
        if self.auto_save:
            self.save_experiment(exp_id)

    def close(self) -> None:
        """Close every experiment still open (their runs end as ``finished``)."""
        for logger in self._loggers.values():
            logger.close()

    def __enter__(self) -> ExperimentTracker:
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        for logger in self._loggers.values():
            logger.close(status="crashed" if exc_type is not None else "finished")

    # -- reading ------------------------------------------------------------------------
    def get_experiment(self, exp_id: str) -> dict[str, Any]:
        """The experiment's row of ``runs`` (JSON fields decoded)."""
        self._flush([exp_id])
        rows = self._rows(reports.runs_by_id_sql([exp_id]))
        if not rows:
            raise ExperimentError(f"no experiment {exp_id!r} in the database")
        row = rows[0]
        row["hyperparameters"] = reports.loads(row.get("hyperparameters")) or {}
        row["final_metrics"] = reports.loads(row.get("final_metrics")) or {}
        return row

    def list_experiments(self, include_hidden: bool = False) -> list[dict[str, Any]]:
        """Every trainer run with its episode count and best profit, newest first."""
        self._flush()
        return [_as_experiment(r) for r in self._rows(reports.runs_sql(include_hidden))]

    def compare_experiments(
        self, exp_ids: Sequence[str], metrics: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """Side-by-side summary of experiments.

        Returns ``{"experiments": {id: {name, status, tags, description, episodes,
        hyperparameters, final_metrics}}, "metrics": {metric: {id: {best, mean, final, min,
        max}}}, "hyperparameters": {param: {id: value}}, "best": {metric: id}}``. NaN and
        infinite values are left out of best/mean/min/max.
        """
        exp_ids = list(dict.fromkeys(exp_ids))
        if not exp_ids:
            raise ValueError("compare_experiments needs at least one experiment id")
        self._flush(exp_ids)
        runs = {r["run_id"]: r for r in self._rows(reports.runs_by_id_sql(exp_ids))}
        missing = [i for i in exp_ids if i not in runs]
        if missing:
            raise ExperimentError(f"no experiment {', '.join(map(repr, missing))} in the database")
        columns = self._metric_columns(metrics)
        stats = {r["run_id"]: r for r in self._rows(reports.compare_sql(exp_ids, columns))}
        return reports.comparison(exp_ids, runs, stats, columns)

    def get_leaderboard(self, metric: str = "profit", top_n: int = 10) -> list[dict[str, Any]]:
        """Experiments ranked by their best episode value of ``metric`` (lowest first for
        drawdown and loss). Archived and deleted runs are left out."""
        if top_n < 1:
            raise ValueError("top_n must be at least 1")
        column = self._metric_columns([metric])[0]
        self._flush()
        rows = [_as_experiment(r) for r in self._rows(reports.leaderboard_sql(column, top_n))]
        for rank, row in enumerate(rows, 1):
            row["rank"] = rank
            row["metric"] = column
            row[column] = row["value"]
            row["hyperparameters"] = reports.loads(row["hyperparameters"]) or {}
        return rows

    # -- files ----------------------------------------------------------------------------
    def _meta_path(self, exp_id: str) -> Path:
        return self.experiments_dir / f"{exp_id}.meta.json"

    def _read_meta(self, exp_id: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._meta_path(exp_id).read_text())
        except (OSError, ValueError):
            return None

    def _write_meta(self, exp_id: str, meta: dict[str, Any]) -> None:
        _write_json(self._meta_path(exp_id), meta)

    def _snapshot(self, exp_id: str) -> dict[str, Any]:
        run = self.get_experiment(exp_id)
        episodes = self._rows(
            f"SELECT * EXCLUDE (run_id) FROM episodes WHERE run_id = {sql_literal(exp_id)} ORDER BY seq"
        )
        for row in episodes:
            extra = reports.loads(row.pop("extra", None))
            if isinstance(extra, dict):
                row.update(extra)
        return {"exp_id": exp_id, "run": run, "episodes": episodes, "saved_at": time.time()}

    def save_experiment(self, exp_id: str) -> Path:
        """Write the experiment (its run row and every episode) to ``<dir>/<exp_id>.json``."""
        path = self.experiments_dir / f"{exp_id}.json"
        _write_json(path, self._snapshot(exp_id))
        return path

    def export_comparison(self, exp_ids: Sequence[str], format: str = "json") -> Path:
        """Write ``compare_experiments(exp_ids)`` to ``<dir>/comparison_<timestamp>.json|csv``.

        The CSV has one row per experiment: id, name, status, episodes, ``<metric>_best``,
        ``<metric>_mean``, ``<metric>_final`` for each metric, and ``hp_<name>`` columns.
        """
        if format not in ("json", "csv"):
            raise ValueError("format must be 'json' or 'csv'")
        comparison = self.compare_experiments(exp_ids)
        stamp = time.strftime("%Y%m%d_%H%M%S")
        path = self.experiments_dir / f"comparison_{stamp}.{format}"
        n = 1
        while path.exists():
            n += 1
            path = self.experiments_dir / f"comparison_{stamp}_{n}.{format}"
        if format == "json":
            _write_json(path, comparison)
            return path
        rows = comparison_rows(comparison)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as fh:
            write_csv_rows(rows, fh, None if rows else ["exp_id"])
        return path

    # -- archive and delete --------------------------------------------------------------
    def _older_than(self, days: float, statuses: Sequence[str] | None = None) -> list[str]:
        cutoff = time.time() - days * 86400
        return [r["run_id"] for r in self._rows(reports.ended_before_sql(int(cutoff * 1e6), statuses))]

    def archive_experiment(self, exp_id: str) -> Path:
        """Save the experiment to ``<dir>/archive/<exp_id>.json``, then ask the collector to
        mark its run ``archived`` (hidden from leaderboards and ``traindash runs``)."""
        snapshot = self._snapshot(exp_id)
        path = self.experiments_dir / "archive" / f"{exp_id}.json"
        _write_json(path, snapshot)
        manage_runs(self.config.endpoints.query, "archive", [exp_id], self.timeout)
        return path

    def delete_experiment(self, exp_id: str) -> None:
        """Ask the collector to delete the run's rows (the run stays as a ``deleted``
        tombstone, so a late re-send is not stored again), then remove its local files."""
        if exp_id in self._loggers and not self._loggers[exp_id].is_closed():
            raise ValueError(f"experiment {exp_id!r} is still open; complete it first")
        manage_runs(self.config.endpoints.query, "delete", [exp_id], self.timeout)
        for path in (self._meta_path(exp_id), self.experiments_dir / f"{exp_id}.json"):
            path.unlink(missing_ok=True)

    def archive_old_experiments(self, days: float = 30.0) -> list[str]:
        """Archive every finished experiment that ended more than ``days`` days ago."""
        ids = self._older_than(days)
        for exp_id in ids:
            self.archive_experiment(exp_id)
        return ids

    def delete_old_experiments(self, days: float = 90.0, archived_only: bool = True) -> list[str]:
        """Delete experiments older than ``days`` days (by default only archived ones)."""
        ids = self._older_than(days, [reports.ARCHIVED] if archived_only else None)
        for exp_id in ids:
            self.delete_experiment(exp_id)
        return ids


def _as_experiment(row: dict[str, Any]) -> dict[str, Any]:
    """A report's row with its ``run_id`` as the experiment's ``exp_id``, first."""
    return {"exp_id": row.pop("run_id"), **row}


def _write_json(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dumps(doc, indent=1))
    tmp.replace(path)

"""``save_metrics`` and the auto-save: a run's metrics written to files in ``output_dir``."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from traindash import config as tdconfig
from traindash.output import dumps, write_csv_rows

log = logging.getLogger("traindash.producer")

AUTO_SAVE_MIN_INTERVAL = 30.0


class Snapshots:
    """Writes one run's rows as JSON or CSV, on request or every ``auto_save_interval`` episodes.

    The rows come from the collector once ``flush`` says it has all of them; when no
    collector answers, from the ``stats`` window of recent records.
    """

    def __init__(
        self,
        experiment_name: str,
        run_id: str,
        output_dir: Path,
        config: tdconfig.ProducerConfig,
        stats: Any,
        flush: Callable[[float], bool],
        auto_save_interval: int,
        min_interval: float | None = None,
    ) -> None:
        self.experiment_name, self.run_id = experiment_name, run_id
        self.output_dir, self.config = output_dir, config
        self.stats, self.flush = stats, flush
        self.auto_save_interval = auto_save_interval
        self.min_interval = AUTO_SAVE_MIN_INTERVAL if min_interval is None else min_interval
        self.closed = False
        self._lock = threading.Lock()
        self._saver: threading.Thread | None = None
        self._next_at = auto_save_interval if auto_save_interval > 0 else None
        self._last = time.monotonic()  # no snapshot in a run's first seconds

    def save(self, format: str) -> Path:
        if format not in ("json", "csv"):
            raise ValueError("format must be 'json' or 'csv'")
        with self._lock:
            return self._save(format)

    def _history(self) -> tuple[list[dict], list[dict], str]:
        # Imported here: pyarrow (~35 MB) stays out of a shipper process until it saves.
        from traindash.query import QueryClient, QueryError, sql_literal

        if self.flush(5.0):
            try:
                with QueryClient(self.config.endpoints.query, timeout=10.0) as client:
                    where = f"WHERE run_id = {sql_literal(self.run_id)} ORDER BY seq"
                    eps = client.query(f"SELECT * EXCLUDE (run_id) FROM episodes {where}")
                    mods = client.query(f"SELECT * EXCLUDE (run_id) FROM model_metrics {where}")
                return _records(eps.to_pylist()), _records(mods.to_pylist()), "collector"
            except QueryError as exc:
                log.warning("save_metrics: %s; writing the local window instead", exc)
        episodes, models = self.stats.window()
        return episodes, models, "local"

    def _save(self, format: str) -> Path:
        episodes, models, source = self._history()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        stem = self.output_dir / f"{self.experiment_name}_{self.run_id}"
        if format == "json":
            path = stem.with_suffix(".json")
            doc = {
                "experiment_name": self.experiment_name,
                "run_id": self.run_id,
                "source": source,
                "statistics": self.stats.statistics(),
                "episodes": episodes,
                "model_metrics": models,
            }
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(dumps(doc, indent=1))
            os.replace(tmp, path)
            return path
        path = stem.with_suffix(".csv")
        _write_csv(path, episodes)
        if models:
            _write_csv(stem.parent / f"{stem.name}_model.csv", models)
        return path

    def maybe_auto_save(self) -> None:
        """Called by the sender after packing: start a background snapshot when due."""
        due = self._next_at
        if due is None or self.stats.n_episodes < due or self.closed:
            return
        now = time.monotonic()
        if now - self._last < self.min_interval or (self._saver is not None and self._saver.is_alive()):
            return
        self._last = now
        self._next_at = self.stats.n_episodes + self.auto_save_interval
        self._saver = threading.Thread(target=self._auto_save, name="traindash-autosave", daemon=True)
        self._saver.start()

    def _auto_save(self) -> None:
        try:
            self.save("json")
        except Exception as exc:
            log.warning("traindash: auto-save of run %s failed: %s", self.run_id, exc)

    def join(self, timeout: float) -> None:
        self.closed = True
        if self._saver is not None:
            self._saver.join(timeout=timeout)


def _records(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        extra = row.pop("extra", None)
        clean = {k: v for k, v in row.items() if v is not None}
        if isinstance(extra, str):
            try:
                clean.update(json.loads(extra))
            except ValueError:
                clean["extra"] = extra
        out.append(clean)
    return out


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as fh:
        write_csv_rows(rows, fh)
    os.replace(tmp, path)

"""Query runs from a notebook or a script: ``traindash.connect()``.

Results are Arrow tables, with ``.df()`` (pandas) and ``.pl()`` (polars, when installed) on
top. Queries go through the collector when one answers (it owns the file) and otherwise open
the file read-only, like ``traindash sql``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from traindash.config import CollectorConfig
from traindash.query import CollectorUnavailable, QueryClient, QueryError, query_file, sql_literal

DEFAULT_MAX_ROWS = 10_000_000
TRAINER_RUNS = "coalesce(role, 'trainer') = 'trainer'"


class Result:
    """A query's answer: an Arrow table, converted on request."""

    def __init__(self, table: pa.Table, truncated: bool = False) -> None:
        self.arrow = table
        self.truncated = truncated

    def df(self, arrow_dtypes: bool = False) -> Any:
        """The rows as a pandas DataFrame: numpy columns, or with ``arrow_dtypes`` pandas'
        Arrow-backed columns, which share the Arrow memory instead of copying it."""
        if arrow_dtypes:
            import pandas as pd

            return self.arrow.to_pandas(types_mapper=pd.ArrowDtype)
        return self.arrow.to_pandas()

    def pl(self) -> Any:
        """The rows as a polars DataFrame (``pip install polars``)."""
        try:
            import polars
        except ImportError:
            raise ImportError("Result.pl() needs polars: pip install polars") from None
        return polars.from_arrow(self.arrow)

    def __len__(self) -> int:
        return self.arrow.num_rows

    @property
    def columns(self) -> list[str]:
        return self.arrow.column_names

    def __repr__(self) -> str:
        cut = ", truncated" if self.truncated else ""
        return f"<traindash.Result {self.arrow.num_rows} rows x {self.arrow.num_columns} columns{cut}>"

    def _repr_html_(self) -> str:
        return str(self.arrow.slice(0, 20).to_pandas().to_html(max_rows=20))


class Connection:
    """Read-only SQL on a traindash database, through the collector or the file."""

    def __init__(self, query: str, db: Path, timeout: float = 2.0) -> None:
        self.query_endpoint = query
        self.db = Path(db)
        self.timeout = timeout
        self._client: QueryClient | None = QueryClient(query, timeout=timeout)
        self.via = "collector"
        try:
            self._client.query("SELECT 1", timeout=timeout)
        except CollectorUnavailable:
            self._client.close()
            self._client = None
            self.via = "file"
            if not self.db.exists():
                raise QueryError(
                    f"no collector answered at {query} and there is no database at {self.db}"
                ) from None

    def sql(self, query: str, max_rows: int = DEFAULT_MAX_ROWS, timeout: float | None = None) -> Result:
        """Run one read-only SELECT and return its rows."""
        if self._client is not None:
            table = self._client.query(query, max_rows=max_rows, timeout=timeout or max(self.timeout, 60.0))
            return Result(table, self._client.last_truncated)
        table = query_file(self.db, query, max_rows)
        return Result(table, table.num_rows >= max_rows)

    def runs(self) -> Result:
        """Every trainer run, newest first, with its episode count."""
        return self.sql(
            "SELECT r.run_id, r.name, r.experiment, r.status, r.started_at, r.ended_at, r.host, "
            "r.hyperparameters, r.tags, coalesce(e.n, 0) AS episodes "
            "FROM runs r LEFT JOIN (SELECT run_id, count(*) AS n FROM episodes GROUP BY run_id) e "
            f"USING (run_id) WHERE {TRAINER_RUNS.replace('role', 'r.role')} "
            "ORDER BY r.started_at DESC NULLS LAST"
        )

    def history(self, run: str, metrics: Sequence[str] | None = None, table: str = "episodes") -> Result:
        """A run's rows of ``table`` in order: ``seq``, ``ts`` and the metrics asked for (all by default)."""
        if table not in ("episodes", "model_metrics"):
            raise ValueError(f"table must be 'episodes' or 'model_metrics', not {table!r}")
        if metrics is None:
            select = "*"
        else:
            names = list(metrics)
            have = set(self.sql(f"SELECT * FROM {table} LIMIT 0").columns)
            unknown = [m for m in names if m not in have]
            if unknown:
                raise QueryError(f"{table} has no column {', '.join(map(repr, unknown))}")
            select = ", ".join(f'"{c}"' for c in dict.fromkeys(["seq", "ts", *names]))
        return self.sql(f"SELECT {select} FROM {table} WHERE run_id = {sql_literal(run)} ORDER BY seq")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.query_endpoint if self.via == "collector" else str(self.db)
        return f"<traindash.Connection via {self.via} {where}>"


def connect(
    db: str | Path | None = None, query: str | None = None, timeout: float = 2.0, config: str | None = None
) -> Connection:
    """Open a read-only connection: the collector at ``query`` when it answers, else the file ``db``.

    Both default like every other process: flags, then ``TRAINDASH_*`` variables, then the
    guide's JSON config (``config``), then ``tcp://127.0.0.1:5557`` and ``traindash.duckdb``.
    """
    from traindash import config as tdconfig

    flags = {k: v for k, v in (("db", db), ("query", query)) if v is not None}
    cfg = CollectorConfig.resolve(flags, None, tdconfig.load_file(config))
    return Connection(cfg.endpoints.query, Path(cfg.db), timeout)

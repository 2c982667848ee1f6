"""RL runs: ``scalars``, ``summaries`` (histograms, text), RL columns of ``episodes``, ``runs.objective``.

An older file may already hold a custom column of ``episodes`` under one of the new names
(any numeric keyword of ``log_episode`` became a DOUBLE column): it is kept as it is, with
its values, and new rows go into it.
"""

from __future__ import annotations

import duckdb

VERSION = 2
DESCRIPTION = "rl runs: scalars and summaries tables, RL columns of episodes, runs.objective"

EPISODE_COLUMNS = {
    "episode_return": "DOUBLE",
    "episode_length": "BIGINT",
    "env_step": "BIGINT",
    "terminated": "BOOLEAN",
    "truncated": "BOOLEAN",
    "env_index": "BIGINT",
    "worker": "VARCHAR",
}


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> set[str]:
    rows = con.execute(
        "SELECT lower(column_name) FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main'",
        [table],
    ).fetchall()
    return {name for (name,) in rows}


def up(con: duckdb.DuckDBPyConnection) -> None:
    have = _columns(con, "episodes")
    for name, sqltype in EPISODE_COLUMNS.items():
        if name not in have:
            con.execute(f"ALTER TABLE episodes ADD COLUMN {name} {sqltype}")
    if "objective" not in _columns(con, "runs"):
        con.execute("ALTER TABLE runs ADD COLUMN objective VARCHAR")
    con.execute(
        """CREATE TABLE scalars (
            run_id VARCHAR, seq BIGINT, ts TIMESTAMP, step BIGINT, name VARCHAR, value DOUBLE)"""
    )
    con.execute(
        """CREATE TABLE summaries (
            run_id VARCHAR, seq BIGINT, ts TIMESTAMP, step BIGINT, name VARCHAR, kind VARCHAR,
            text VARCHAR, "values" DOUBLE[], count BIGINT, min DOUBLE, max DOUBLE, mean DOUBLE,
            std DOUBLE, extra JSON)"""
    )

"""Streams: several writers of one run, each with its own seqs, acks and liveness.

``streams`` holds one row per writer (``stream_key`` is what the wire's ``run`` field carries:
``run_id#stream``); the rows they write keep ``run_id`` = the run and name the writer in a new
``stream`` column (NULL for a run's only writer, as every row before this version).
"""

from __future__ import annotations

import duckdb

VERSION = 5
DESCRIPTION = "streams table; stream column of episodes, model_metrics, scalars, summaries, system"

TABLES = ("episodes", "model_metrics", "scalars", "summaries", "system")


def up(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        """CREATE TABLE streams (
            stream_key VARCHAR PRIMARY KEY, run_id VARCHAR, stream VARCHAR, worker VARCHAR,
            host VARCHAR, pid BIGINT, acked_seq BIGINT DEFAULT 0, last_seen TIMESTAMP,
            status VARCHAR, started_at TIMESTAMP, ended_at TIMESTAMP)"""
    )
    for table in TABLES:
        have = {
            name
            for (name,) in con.execute(
                "SELECT lower(column_name) FROM information_schema.columns "
                "WHERE table_name = ? AND table_schema = 'main'",
                [table],
            ).fetchall()
        }
        if "stream" not in have:  # an older file may hold a custom DOUBLE "stream": kept as is
            con.execute(f"ALTER TABLE {table} ADD COLUMN stream VARCHAR")

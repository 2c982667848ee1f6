"""The schema of the release before migrations: runs, episodes, model metrics, alerts, rejects.

Frozen: a fresh file is created by running every migration from this one, so this DDL must
stay exactly what that release wrote. Later changes are later migrations.
"""

from __future__ import annotations

import duckdb

VERSION = 1
DESCRIPTION = "baseline: the tables of the release before migrations"

DDL = [
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, experiment VARCHAR, name VARCHAR, host VARCHAR, pid BIGINT,
        started_at TIMESTAMP, ended_at TIMESTAMP, status VARCHAR, hyperparameters JSON,
        tags VARCHAR[], description VARCHAR, acked_seq BIGINT NOT NULL DEFAULT 0,
        last_seen TIMESTAMP, final_metrics JSON, role VARCHAR DEFAULT 'trainer')""",
    """CREATE TABLE rejects (
        reason VARCHAR PRIMARY KEY, count BIGINT NOT NULL, last_at TIMESTAMP,
        last_sender VARCHAR, last_detail VARCHAR)""",
    """CREATE TABLE episodes (
        run_id VARCHAR, seq BIGINT, ts TIMESTAMP, episode BIGINT, profit DOUBLE, sharpe DOUBLE,
        win_rate DOUBLE, drawdown DOUBLE, num_trades BIGINT, epsilon DOUBLE,
        learning_rate DOUBLE, extra JSON)""",
    """CREATE TABLE model_metrics (
        run_id VARCHAR, seq BIGINT, ts TIMESTAMP, step BIGINT, episode BIGINT, loss DOUBLE,
        q_mean DOUBLE, q_std DOUBLE, q_min DOUBLE, q_max DOUBLE, q_values DOUBLE[],
        grad_mean DOUBLE, grad_std DOUBLE, extra JSON)""",
    """CREATE TABLE alerts (
        ts TIMESTAMP, run_id VARCHAR, level VARCHAR, rule VARCHAR, title VARCHAR,
        message VARCHAR, data JSON, channels VARCHAR[], source VARCHAR, seq BIGINT)""",
]


def up(con: duckdb.DuckDBPyConnection) -> None:
    for statement in DDL:
        con.execute(statement)

"""Alerts that survive restarts, and runs bound to the key that opened them (issue 18).

* ``alerts.alert_key``: the alert's key (run, rule, the row that fired it); the collector
  stores at most one row per key. ``alerts.row_seq``: the seq of that row (NULL for alerts
  no row fired, such as a stalled trainer).
* ``alert_marks``: per alerts consumer and run, the highest seq whose alerts are all
  recorded (the alerts process's watermark).
* ``runs.owner_key``: under CURVE, the public key (Z85) that opened the run.
"""

from __future__ import annotations

import duckdb

VERSION = 4
DESCRIPTION = "alert keys, alert watermarks, run owners"


def up(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("ALTER TABLE alerts ADD COLUMN alert_key VARCHAR")
    con.execute("ALTER TABLE alerts ADD COLUMN row_seq BIGINT")
    con.execute(
        """CREATE TABLE alert_marks (
            consumer VARCHAR NOT NULL, run_id VARCHAR NOT NULL, evaluated_seq BIGINT NOT NULL,
            updated_at TIMESTAMP, PRIMARY KEY (consumer, run_id))"""
    )
    con.execute("ALTER TABLE runs ADD COLUMN owner_key VARCHAR")

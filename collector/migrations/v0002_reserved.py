"""Placeholder; the lead replaces it with the RL-runs migration at merge.

Version 2 is taken by another branch's migration (written concurrently with this one), and
the runner wants versions without gaps, so this branch holds the number with a no-op.
"""

from __future__ import annotations

import duckdb

VERSION = 2
DESCRIPTION = "reserved"


def up(con: duckdb.DuckDBPyConnection) -> None:
    """Nothing: a placeholder (see the module docstring)."""

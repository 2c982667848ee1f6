"""Reserved version 2: does nothing."""

# placeholder; the lead replaces it at merge

from __future__ import annotations

import duckdb

VERSION = 2
DESCRIPTION = "reserved"


def up(con: duckdb.DuckDBPyConnection) -> None:
    pass

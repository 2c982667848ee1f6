"""Reserved for another branch's migration."""

# placeholder; the lead replaces it at merge

from __future__ import annotations

import duckdb

VERSION = 4
DESCRIPTION = "reserved"


def up(con: duckdb.DuckDBPyConnection) -> None:
    pass

"""The version of the DuckDB schema this code writes and reads.

The collector's numbered migrations (``collector/migrations/``) bring any older file up to it;
readers that open a file themselves (``traindash sql`` with no collector) compare against it.
Version 1 is the schema of the release before migrations existed.
"""

SCHEMA_VERSION = 5


def describe(version: int) -> str:
    """How a file's schema version compares with this code's, in words for an error line."""
    if version > SCHEMA_VERSION:
        return (
            f"schema version {version} is newer than this traindash understands "
            f"(version {SCHEMA_VERSION}); upgrade traindash to open it"
        )
    if version < SCHEMA_VERSION:
        return (
            f"schema version {version} is older than this traindash's (version {SCHEMA_VERSION}); "
            "start the collector on it once to migrate it (it keeps a backup copy first)"
        )
    return f"schema version {version}"

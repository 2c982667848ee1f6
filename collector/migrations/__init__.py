"""Numbered, ordered schema migrations, run by the collector when it opens an older file.

Each migration is a module ``vNNNN_<name>.py`` in this package with ``VERSION`` (its number),
``DESCRIPTION`` and ``up(con)``. Versions run 1, 2, 3, ... with no gaps, and the last one is
``traindash.schema.SCHEMA_VERSION``. A fresh file is made by running all of them, so a new
file and an upgraded one have the same tables. Add a migration; never edit a released one.

Upgrading a file that holds data (``upgrade_file``):

1. its version is read from the file opened read-only; a newer file is refused, untouched;
2. a copy of the file is kept beside it (``<name>.v<old>-backup.duckdb``), and the log says where;
3. the migrations run on a second copy, each in one transaction with its version bump;
4. only when all succeeded does that copy replace the original (``os.replace``). A failure
   removes the copy and leaves the original byte for byte as it was.
"""

from __future__ import annotations

import importlib
import logging
import os
import pkgutil
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from traindash.schema import SCHEMA_VERSION, describe

log = logging.getLogger("traindash.collector.migrations")


class MigrationError(RuntimeError):
    """A file could not be brought to this code's schema; the message says what to do."""


@dataclass(frozen=True)
class Migration:
    """One numbered schema change."""

    version: int
    description: str
    up: Callable[[duckdb.DuckDBPyConnection], None]


def migrations() -> list[Migration]:
    """Every migration in this package, in order (checked: 1..SCHEMA_VERSION, no gaps)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("v") and info.name[1:5].isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            found.append(Migration(module.VERSION, module.DESCRIPTION, module.up))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)) or versions[-1] != SCHEMA_VERSION:
        raise MigrationError(f"migrations {versions} do not run 1..{SCHEMA_VERSION} without gaps")
    return found


def file_version(con: duckdb.DuckDBPyConnection) -> int:
    """The schema version stamped in an open file; 0 for a file with no tables yet."""
    tables = {
        name
        for (name,) in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()
    }
    if "schema_info" not in tables:
        if tables - {"schema_info"}:
            raise MigrationError(f"the file has tables ({', '.join(sorted(tables))}) but no schema_info")
        return 0
    row = con.execute("SELECT max(version) FROM schema_info").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def read_version(path: Path) -> int:
    """The schema version of the file at ``path``, opened read-only (0 when it does not exist)."""
    if not path.exists():
        return 0
    con = duckdb.connect(str(path), read_only=True)
    try:
        return file_version(con)
    finally:
        con.close()


def apply(
    con: duckdb.DuckDBPyConnection, steps: Sequence[Migration] | None = None, target: int | None = None
) -> list[int]:
    """Run the migrations above the file's version on ``con``; each commits with its bump."""
    steps = migrations() if steps is None else list(steps)
    target = SCHEMA_VERSION if target is None else target
    current = file_version(con)
    done = []
    for step in steps:
        if step.version <= current or step.version > target:
            continue
        try:
            con.execute("BEGIN TRANSACTION")
            step.up(con)
            con.execute("CREATE TABLE IF NOT EXISTS schema_info (version INTEGER)")
            con.execute("DELETE FROM schema_info")
            con.execute("INSERT INTO schema_info VALUES (?)", [step.version])
            con.execute("COMMIT")
        except Exception as exc:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise MigrationError(f"migration {step.version} ({step.description}) failed: {first}") from exc
        done.append(step.version)
    return done


def _copy(src: Path, dst: Path) -> None:
    shutil.copy2(src, dst)
    wal = Path(f"{src}.wal")
    if wal.exists():  # an unclean shutdown: the WAL belongs to the file
        shutil.copy2(wal, f"{dst}.wal")


def backup_path(path: Path, version: int) -> Path:
    """Where the copy of a file at ``version`` is kept before it is migrated (never overwritten)."""
    candidate = path.with_name(f"{path.stem}.v{version}-backup{path.suffix}")
    n = 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}.v{version}-backup-{n}{path.suffix}")
    return candidate


def upgrade_file(
    path: Path, steps: Sequence[Migration] | None = None, target: int | None = None
) -> Path | None:
    """Bring the file at ``path`` to ``target`` (this code's version); return the backup made.

    A missing or empty file is created in place (nothing to keep). A file newer than the
    code is refused before anything is written.
    """
    target = SCHEMA_VERSION if target is None else target
    version = read_version(path)
    if version > target:
        raise MigrationError(f"{path}: {describe(version)}; it was not opened or changed")
    if version == target:
        return None
    if version == 0:
        con = duckdb.connect(str(path))
        try:
            apply(con, steps, target)
        finally:
            con.close()
        return None
    backup = backup_path(path, version)
    _copy(path, backup)
    work = path.with_name(f"{path.name}.migrating")
    for stale in (work, Path(f"{work}.wal")):
        stale.unlink(missing_ok=True)
    _copy(path, work)
    log.warning(
        "%s has schema version %d; migrating it to %d. A copy of the original is at %s",
        path,
        version,
        target,
        backup,
    )
    try:
        con = duckdb.connect(str(work))
        try:
            done = apply(con, steps, target)
            con.execute("CHECKPOINT")
        finally:
            con.close()
    except BaseException:
        for leftover in (work, Path(f"{work}.wal")):
            leftover.unlink(missing_ok=True)
        raise
    Path(f"{work}.wal").unlink(missing_ok=True)  # checkpointed: nothing left in it
    os.replace(work, path)
    Path(f"{path}.wal").unlink(missing_ok=True)  # the old WAL was replayed into the copy
    log.warning("%s migrated through %s; the original is kept at %s", path, done, backup)
    return backup

"""Upgrades keep every row: the previous release's database opens, migrated (issue 22)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from tests.harness import ROOT, CollectorProcess, free_endpoints, run_cli, traindash_cmd, wait_for
from traindash.collector.migrations import Migration, MigrationError, migrations, upgrade_file
from traindash.producer import MetricsLogger
from traindash.reports import runs_sql
from traindash.schema import SCHEMA_VERSION

FIXTURES = ROOT.parent / "shared" / "fixtures"
OLD_DB = FIXTURES / "previous-release.duckdb"
OLD_FACTS = json.loads((FIXTURES / "previous-release.json").read_text()) if OLD_DB.exists() else {}

pytestmark = pytest.mark.skipif(not OLD_DB.exists(), reason=f"no fixture at {OLD_DB}")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def old_db(tmp_path: Path) -> Path:
    """A writable copy of the previous release's database."""
    db = tmp_path / "traindash.duckdb"
    shutil.copyfile(OLD_DB, db)
    return db


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_name = ?",
        [table],
    ).fetchall()
    return dict(rows)


def _assert_everything_kept(con: duckdb.DuckDBPyConnection, added_runs: tuple[str, ...] = ()) -> None:
    """Every table, column, type, count and sum of the fixture, apart from runs added since."""
    added = ", ".join("'" + r.replace("'", "''") + "'" for r in added_runs) or "''"
    for table, facts in OLD_FACTS["tables"].items():
        have = _columns(con, table)
        for column, sqltype in facts["columns"].items():
            assert column in have, f"{table}.{column} is gone"
            assert have[column] == sqltype, f"{table}.{column} is {have[column]}, was {sqltype}"
        if table not in ("schema_info", "leaderboard"):  # one row of its own; a view
            keep = f" WHERE run_id NOT IN ({added})" if "run_id" in have else ""
            (count,) = con.execute(f"SELECT count(*) FROM {table}{keep}").fetchone()
            assert count == facts["rows"], f"{table} has {count} rows, had {facts['rows']}"
    checks = OLD_FACTS["checks"]
    (profit, score) = con.execute(
        f"SELECT sum(profit), sum(custom_score) FROM episodes WHERE run_id NOT IN ({added})"
    ).fetchone()
    # the JSON holds the sums to 6 decimals
    assert profit == pytest.approx(checks["episodes_sum_profit"], abs=1e-6)
    assert score == pytest.approx(checks["episodes_sum_custom_score"], abs=1e-6)
    (nan_losses,) = con.execute("SELECT count(*) FROM model_metrics WHERE isnan(loss)").fetchone()
    assert nan_losses == checks["model_nan_losses"]
    statuses = f"SELECT status, count(*) FROM runs WHERE run_id NOT IN ({added}) GROUP BY ALL"
    assert dict(con.execute(statuses).fetchall()) == checks["runs_by_status"]


def test_migrations_are_numbered_without_gaps() -> None:
    versions = [m.version for m in migrations()]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_a_fresh_file_and_an_upgraded_one_have_the_same_tables(tmp_path: Path, old_db: Path) -> None:
    fresh = tmp_path / "fresh.duckdb"
    upgrade_file(fresh)
    upgrade_file(old_db)
    with duckdb.connect(str(fresh), read_only=True) as a, duckdb.connect(str(old_db), read_only=True) as b:
        tables = [n for (n,) in a.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        assert set(tables) >= {"runs", "episodes", "model_metrics", "alerts", "rejects", "schema_info"}
        for table in tables:
            fresh_cols, old_cols = _columns(a, table), _columns(b, table)
            # the old file may carry custom columns a fresh one has not grown yet
            assert fresh_cols.items() <= old_cols.items(), table
        assert a.execute("SELECT version FROM schema_info").fetchall() == [(SCHEMA_VERSION,)]
        assert b.execute("SELECT version FROM schema_info").fetchall() == [(SCHEMA_VERSION,)]


def test_the_collector_upgrades_the_previous_release_and_keeps_every_row(
    tmp_path: Path, old_db: Path
) -> None:
    collector = CollectorProcess(db=old_db, endpoints=free_endpoints(), log_path=tmp_path / "collector.log")
    try:
        collector.start()
        old_runs = {r["run_id"] for r in collector.query("SELECT run_id FROM runs").to_pylist()}
        assert len(old_runs) == OLD_FACTS["tables"]["runs"]["rows"]
        # the CLI and the leaderboard see the old runs
        listed = run_cli("runs", "--format", "json", env=collector.env)
        assert listed.returncode == 0, listed.stderr
        listed_runs = {json.loads(line)["exp_id"] for line in listed.stdout.splitlines() if line.strip()}
        assert len(listed_runs) >= 3 and listed_runs <= old_runs
        board = run_cli("leaderboard", "--format", "json", env=collector.env)
        assert board.returncode == 0, board.stderr
        ranked = {json.loads(line)["exp_id"] for line in board.stdout.splitlines() if line.strip()}
        assert len(ranked) >= 3 and ranked <= listed_runs
        # the dashboard's trainer table and history read them through the same query socket
        shown = {r["run_id"]: r["episodes"] for r in collector.query(runs_sql()).to_pylist()}
        assert ranked <= shown.keys() and sum(shown.values()) == OLD_FACTS["tables"]["episodes"]["rows"]
        # a new run is written into the same file beside them
        with MetricsLogger(
            "after-upgrade", output_dir=str(tmp_path / "logs"), config=collector.producer_config()
        ) as logger:
            for episode in range(1, 21):
                logger.log_episode(episode, profit=float(episode), brand_new_metric=episode * 0.5)
            new_run = logger.run_id
        wait_for(
            lambda: collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{new_run}'") == 20,
            30,
            "the new run's episodes",
        )
        assert collector.scalar("SELECT sum(brand_new_metric) FROM episodes") == pytest.approx(105.0)
        assert collector.stop() == 0
    finally:
        collector.kill()
    backups = sorted(tmp_path.glob("traindash.v*-backup*.duckdb"))
    if OLD_FACTS["tables"]["schema_info"]["rows"] < SCHEMA_VERSION:  # the fixture is at version 1
        assert len(backups) == 1 and sha256(backups[0]) == sha256(OLD_DB)
        assert str(backups[0]) in collector.log_path.read_text()
    with duckdb.connect(str(old_db), read_only=True) as con:
        _assert_everything_kept(con, added_runs=(new_run,))
        assert con.execute("SELECT version FROM schema_info").fetchall() == [(SCHEMA_VERSION,)]


def test_a_migration_that_fails_midway_leaves_the_file_byte_for_byte(tmp_path: Path, old_db: Path) -> None:
    before = sha256(old_db)

    def widen(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("ALTER TABLE episodes ADD COLUMN doubled DOUBLE")
        con.execute("UPDATE episodes SET doubled = profit * 2")

    def breaks_halfway(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE half_done (x INTEGER)")
        con.execute("DELETE FROM episodes")
        raise RuntimeError("the disk went away")

    steps = [
        *migrations(),
        Migration(SCHEMA_VERSION + 1, "widen", widen),
        Migration(SCHEMA_VERSION + 2, "breaks halfway", breaks_halfway),
    ]
    with pytest.raises(MigrationError, match=rf"migration {SCHEMA_VERSION + 2} \(breaks halfway\) failed"):
        upgrade_file(old_db, steps, target=SCHEMA_VERSION + 2)
    assert sha256(old_db) == before
    assert not list(tmp_path.glob("*.migrating*")), "the working copy was left behind"
    backups = list(tmp_path.glob("traindash.v1-backup*.duckdb"))
    assert len(backups) == 1 and sha256(backups[0]) == before
    with duckdb.connect(str(old_db), read_only=True) as con:
        _assert_everything_kept(con)


def test_a_file_from_a_newer_version_is_refused_untouched(tmp_path: Path, old_db: Path) -> None:
    with duckdb.connect(str(old_db)) as con:
        con.execute("UPDATE schema_info SET version = ?", [SCHEMA_VERSION + 7])
    before = sha256(old_db)
    endpoints = free_endpoints()
    env = CollectorProcess(db=old_db, endpoints=endpoints, log_path=tmp_path / "c.log").env
    out = subprocess.run(
        traindash_cmd("collector"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode != 0
    assert f"schema version {SCHEMA_VERSION + 7} is newer than this traindash" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr  # one clear line, no traceback
    sql = run_cli("sql", "SELECT count(*) FROM episodes", "--db", str(old_db), "--timeout", "0.3", env=env)
    assert sql.returncode != 0 and "newer than this traindash" in sql.stderr
    assert sha256(old_db) == before
    assert not list(tmp_path.glob("traindash.v*-backup*"))


def test_the_read_only_path_reads_an_old_file_without_migrating_it(tmp_path: Path, old_db: Path) -> None:
    before = sha256(old_db)
    env = CollectorProcess(db=old_db, endpoints=free_endpoints(), log_path=tmp_path / "c.log").env
    out = run_cli(
        "sql",
        "SELECT count(*) AS n FROM episodes",
        "--db",
        str(old_db),
        "--format",
        "json",
        "--timeout",
        "0.3",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[0])["n"] == OLD_FACTS["tables"]["episodes"]["rows"]
    assert sha256(old_db) == before


def test_a_fresh_file_has_every_column_the_collector_inserts(tmp_path: Path) -> None:
    from traindash.collector.tables import CORE_COLUMNS

    fresh = tmp_path / "fresh.duckdb"
    upgrade_file(fresh)
    with duckdb.connect(str(fresh), read_only=True) as con:
        for table, columns in CORE_COLUMNS.items():
            have = _columns(con, table)
            for name, sqltype in columns.items():
                assert have.get(name) == sqltype, f"{table}.{name}: a migration must add it as {sqltype}"

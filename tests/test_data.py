"""traindash.connect(): the query API for notebooks and scripts, on a live collector and a closed file."""

from __future__ import annotations

from pathlib import Path

import pytest

import traindash
from tests.harness import CollectorProcess, wait_for
from traindash.producer import MetricsLogger
from traindash.query import QueryError


def _log_run(collector: CollectorProcess, tmp_path: Path, episodes: int = 50) -> str:
    with MetricsLogger(
        "api", output_dir=str(tmp_path / "logs"), name="api-run", config=collector.producer_config()
    ) as logger:
        for e in range(1, episodes + 1):
            logger.log_episode(e, profit=e * 1.5, sharpe=0.1 * e, extra_score=e % 3)
        return logger.run_id


def test_connect_through_a_live_collector(collector: CollectorProcess, tmp_path: Path) -> None:
    run_id = _log_run(collector, tmp_path)
    wait_for(lambda: collector.scalar("SELECT count(*) FROM episodes") == 50, 30, "the episodes")
    with traindash.connect(db=str(tmp_path / "absent.duckdb"), query=collector.endpoints.query) as con:
        assert con.via == "collector"
        runs = con.runs()
        assert runs.arrow.column("run_id").to_pylist() == [run_id]
        assert runs.df()["episodes"].tolist() == [50]
        history = con.history(run_id, ["profit", "extra_score"])
        assert history.columns == ["seq", "ts", "profit", "extra_score"]
        df = history.df()
        assert df["profit"].tolist() == [e * 1.5 for e in range(1, 51)]
        pl = pytest.importorskip("polars")
        frame = con.sql("SELECT episode, profit FROM episodes ORDER BY episode").pl()
        assert isinstance(frame, pl.DataFrame) and frame["episode"].to_list() == list(range(1, 51))
        with pytest.raises(QueryError, match="no column 'nope'"):
            con.history(run_id, ["nope"])


def test_connect_reads_a_closed_file_read_only(stopped_collector: CollectorProcess, tmp_path: Path) -> None:
    stopped_collector.start()
    run_id = _log_run(stopped_collector, tmp_path, episodes=20)
    wait_for(lambda: stopped_collector.scalar("SELECT count(*) FROM episodes") == 20, 30, "the episodes")
    assert stopped_collector.stop() == 0
    con = traindash.connect(
        db=str(stopped_collector.db), query=stopped_collector.endpoints.query, timeout=0.3
    )
    assert con.via == "file"
    assert con.history(run_id).df()["episode"].tolist() == list(range(1, 21))
    assert len(con.runs()) == 1
    con.close()
    # read-only: the collector opens the same file afterwards
    stopped_collector.start()
    assert stopped_collector.scalar("SELECT count(*) FROM episodes") == 20


def test_connect_says_when_there_is_nothing_to_read(tmp_path: Path) -> None:
    from tests.harness import free_endpoints

    with pytest.raises(QueryError, match="no collector answered"):
        traindash.connect(db=str(tmp_path / "none.duckdb"), query=free_endpoints().query, timeout=0.2)

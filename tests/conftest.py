from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import CollectorProcess, free_endpoints


@pytest.fixture
def stopped_collector(tmp_path: Path) -> Iterator[CollectorProcess]:
    """A collector on free ports with its own DuckDB file, not started yet."""
    c = CollectorProcess(
        db=tmp_path / "td.duckdb", endpoints=free_endpoints(), log_path=tmp_path / "collector.log"
    )
    try:
        yield c
    finally:
        c.kill()


@pytest.fixture
def collector(stopped_collector: CollectorProcess) -> CollectorProcess:
    """A running collector (killed after the test)."""
    return stopped_collector.start()


@pytest.fixture
def td_env(monkeypatch: pytest.MonkeyPatch, stopped_collector: CollectorProcess) -> CollectorProcess:
    """Point TRAINDASH_* at the test's collector for code that reads the environment."""
    for key, value in stopped_collector.env.items():
        if key.startswith("TRAINDASH_"):
            monkeypatch.setenv(key, value)
    return stopped_collector

"""The fleet table in a browser: a run's streams folded under it, with a health grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import CollectorProcess, wait_for
from tests.ui.conftest import UIServer
from tests.ui.pagejs import open_page
from traindash.producer import MetricsLogger

pytestmark = pytest.mark.browser


def test_fleet_table_shows_a_runs_streams_and_their_states(
    collector: CollectorProcess, ui_server: UIServer, tmp_path: Path, page: Any
) -> None:
    loggers = [
        MetricsLogger(
            "fleet",
            output_dir=str(tmp_path / "spool"),
            run_id="fleet-run",
            stream=f"env_runner_{i}-{100 + i}",
            worker=f"env_runner_{i}",
            config=collector.producer_config(),
            objective="episode_return",
        )
        for i in range(3)
    ]
    try:
        for lg in loggers:
            for e in range(5):
                lg.log_episode(e, episode_return=float(e))
            assert lg.flush(timeout=30)
        loggers[2].close()
        wait_for(
            lambda: collector.scalar("SELECT count(*) FROM streams WHERE status = 'finished'") == 1,
            30,
            "one stream to finish",
        )
        open_page(page, ui_server.url + "/")
        summary = page.locator(".td-streams summary")
        summary.wait_for(timeout=60_000)
        assert summary.inner_text() == "3 streams: 2 running · 1 finished"
        assert page.locator(".td-grid span").count() == 3
        assert page.locator(".td-grid span.lvl-good").count() == 2
        assert not page.get_by_text("env_runner_1-101", exact=True).is_visible()  # folded
        # Opened with the box, the streams stay open through the table's refreshes.
        page.locator("input[type=checkbox]").check()  # the page's one checkbox
        page.get_by_text("env_runner_1", exact=True).wait_for()
        assert page.locator("table.td-fleet > tbody > tr").count() == 2  # the run, its streams
        refreshed = page.locator(".td-streams summary").element_handle()
        wait_for(lambda: refreshed is None or not refreshed.is_visible(), 30, "a refresh of the table", 0.2)
        page.get_by_text("env_runner_1", exact=True).wait_for()
        assert page.get_by_text("env_runner_1", exact=True).is_visible()
    finally:
        for lg in loggers:
            lg.close()

"""The live page's Sharpe axis follows the bulk of the curve as rows stream in.

A live page session (the server side of one browser tab) against a real collector: its
history comes through the query socket, new rows through the rows feed, and each update
(``tick``) streams them into the plots, as the periodic callback does on a served page.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.harness import CollectorProcess, wait_for
from traindash.cli.demo_trainer import DemoAgent
from traindash.config import UIConfig
from traindash.producer import MetricsLogger
from traindash.ui.context import AppContext
from traindash.ui.feed import RowsFeed
from traindash.ui.figures import robust_range
from traindash.ui.pages.live import LiveSession
from traindash.ui.themes import get_theme

# The page's widgets take ``name=`` (Panel 1.4 has no ``label=``); a served page never
# shows this warning, a session built in the test process does.
pytestmark = pytest.mark.filterwarnings("ignore:Widget.name is deprecated:PendingDeprecationWarning")


@pytest.fixture
def session(collector: CollectorProcess) -> Iterator[LiveSession]:
    feed = RowsFeed(collector.endpoints.rows)
    feed.start()
    ctx = AppContext(UIConfig(endpoints=collector.endpoints), feed)
    live = LiveSession(ctx, get_theme("dark"))
    try:
        yield live
    finally:
        live.close()
        feed.stop()
        ctx.pool.shutdown(wait=True, cancel_futures=True)


def test_the_sharpe_axis_follows_the_robust_range_as_rows_stream_in(
    collector: CollectorProcess, session: LiveSession, tmp_path: Path
) -> None:
    agent = DemoAgent(seed=0, episodes=1000)
    logger = MetricsLogger("sharpe-axis", output_dir=str(tmp_path), config=collector.producer_config())
    try:
        for _ in range(5):  # the page opens early: the first episodes' Sharpe is in the hundreds
            logger.log_episode(**agent.step())
        assert logger.flush(timeout=30)
        session.refresh_runs()
        session.picker.value = [logger.run_id]
        session.rebuild(inline_wait=60)
        assert session.loaded
        sharpe = session._sharpe.y_range
        assert sharpe.end > 250  # five points, all of them the start of the run
        source = session.views[logger.run_id].sources.episodes

        def follows() -> None:
            """The axis is the robust range of what the plot holds (within the refit tolerance)."""
            fit = robust_range([np.asarray(source.data["sharpe_smooth"], dtype=float)], include=(0.0, 1.0))
            assert fit is not None
            near = 0.05 * (sharpe.end - sharpe.start)
            assert abs(sharpe.start - fit[0]) <= near and abs(sharpe.end - fit[1]) <= near, (
                len(source.data["seq"]),
                (sharpe.start, sharpe.end),
                fit,
            )

        def streamed(n: int) -> bool:
            before = len(source.data["seq"])
            session.tick()
            if len(source.data["seq"]) > before:
                follows()  # on the very update that streamed the rows
            return len(source.data["seq"]) == n

        # Rows arrive in bursts, faster than the page refreshes its tables (every 2 s).
        for n in range(25, 301, 25):
            while agent.episode < n:
                logger.log_episode(**agent.step())
            assert logger.flush(timeout=30)
            wait_for(lambda n=n: streamed(n), 60, f"{n} rows streamed into the page")
        shown = np.asarray(source.data["sharpe_smooth"], dtype=float)
        assert np.abs(shown[:3]).max() > 100  # still on the plot, only not in the axis
        assert sharpe.start <= 0.0 and 1.0 <= sharpe.end < 20, (sharpe.start, sharpe.end)
        assert (sharpe.reset_start, sharpe.reset_end) == (sharpe.start, sharpe.end)
    finally:
        logger.close()

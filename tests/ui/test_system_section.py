"""The live page's system section in headless Chromium, fed by a real trainer's samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.harness import CollectorProcess, wait_for
from tests.ui.conftest import UIServer
from tests.ui.pagejs import named, open_page
from traindash.producer import MetricsLogger
from traindash.ui.system import SYSTEM_PLOTS

pytestmark = pytest.mark.browser

SOURCE_DATA = """(name) => {
  for (const doc of Bokeh.documents) {
    for (const m of doc.all_models) {
      if (m.name === name && m.data) {
        return {cpu: Array.from(m.data.cpu_percent), rss: Array.from(m.data.rss_bytes),
                t: Array.from(m.data.t)};
      }
    }
  }
  return null;
}"""


def _samples(collector: CollectorProcess, run_id: str) -> int:
    return collector.scalar(f"SELECT count(*) FROM system WHERE run_id = '{run_id}' AND gpu_index IS NULL")


def test_system_section_shows_cpu_and_rss_lines_of_a_live_trainer(
    collector: CollectorProcess, ui_server: UIServer, tmp_path: Path, page: Any
) -> None:
    logger = MetricsLogger(
        "uitest",
        output_dir=str(tmp_path / "sys"),
        name="sys-run",
        config=collector.producer_config(),
        system_metrics_interval=0.3,
    )
    run_id = logger.run_id
    try:
        logger.log_episode(1, 1.0)
        wait_for(lambda: _samples(collector, run_id) >= 2, 30, "samples to be committed")
        open_page(page, f"{ui_server.url}/?run={run_id}")
        assert not any(name.startswith("system:") for name in named(page))  # drawn when shown
        page.locator(".bk-tab", has_text="System").first.click()
        wait_for(lambda: "system:cpu" in named(page), 30, "the system plots")
        models = named(page)
        assert {f"system:{key}" for key in SYSTEM_PLOTS} <= models.keys()
        first = wait_for(lambda: named(page).get(f"proc:{run_id}", 0), 30, "the system history on the page")
        # new samples stream in while the trainer lives
        wait_for(lambda: named(page).get(f"proc:{run_id}", 0) >= first + 3, 60, "streamed samples")
        data = page.evaluate(SOURCE_DATA, f"proc:{run_id}")
        rss_now = psutil.Process().memory_info().rss
        assert all(0.5 * rss_now < rss < 2 * rss_now for rss in data["rss"]), (data["rss"], rss_now)
        assert all(0 <= cpu <= 100 * (psutil.cpu_count() or 1) + 50 for cpu in data["cpu"]), data["cpu"]
        assert data["t"] == sorted(data["t"])
        # no GPU here (or NVML off): no GPU lines; the trainer table has its GPU column
        if not any(name.startswith(f"gpu:{run_id}:") for name in named(page)):
            assert collector.scalar(f"SELECT count(gpu_index) FROM system WHERE run_id = '{run_id}'") == 0
        page.locator("th", has_text="GPU").first.wait_for()
    finally:
        logger.close()

"""The dashboard in headless Chromium, against a real collector and ui server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import CollectorProcess, wait_for
from tests.ui.conftest import Trainer, UIServer, start_ui
from tests.ui.pagejs import named, open_page, plots, points
from traindash.ui.figures import PLOTS

pytestmark = pytest.mark.browser

KPI_LABELS = (
    "Current episode",
    "Latest profit",
    "Best profit",
    "Best episode",
    "Recent average (50)",
    "Sharpe ratio",
)


def _logged(collector: CollectorProcess, run_id: str, n: int) -> bool:
    return collector.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{run_id}'") >= n


def test_live_page_shows_8_plots_kpis_and_grows_while_a_trainer_logs(
    collector: CollectorProcess, ui_server: UIServer, trainers: list[Trainer], tmp_path: Path, page: Any
) -> None:
    trainer = Trainer(collector, tmp_path, "grow")
    trainers.append(trainer)
    trainer.log(30)
    wait_for(lambda: _logged(collector, trainer.run_id, 30), 30, "history to be committed")
    trainer.start()
    open_page(page, ui_server.url + "/")
    assert plots(page) == sorted(PLOTS)
    for label in KPI_LABELS:
        page.get_by_text(label, exact=True).wait_for()
    first = wait_for(lambda: points(page, trainer.run_id), 30, "history in the profit source")
    assert first >= 30
    wait_for(lambda: points(page, trainer.run_id) >= first + 20, 60, "streamed rows to reach the page")
    # The lag probe ran in the browser and is shown on the page.
    lags = wait_for(lambda: page.evaluate("() => window.traindash_lags || []"), 30, "a lag sample")
    assert all(lag > -1 for lag in lags)
    page.get_by_text("log → screen:", exact=False).wait_for()
    # Model metrics stream too (loss and Q-value plots).
    wait_for(lambda: named(page).get(f"model:{trainer.run_id}", 0) > 6, 60, "model rows")


def test_a_run_can_be_picked(
    collector: CollectorProcess, ui_server: UIServer, trainers: list[Trainer], tmp_path: Path, page: Any
) -> None:
    first = Trainer(collector, tmp_path, "first-run", seed=1)
    second = Trainer(collector, tmp_path, "second-run", seed=2)
    trainers += [first, second]
    first.log(10)
    second.log(15)
    wait_for(
        lambda: _logged(collector, first.run_id, 10) and _logged(collector, second.run_id, 15),
        30,
        "both runs committed",
    )
    open_page(page, f"{ui_server.url}/?run={first.run_id}")
    wait_for(lambda: points(page, first.run_id) == 10, 30, "the first run's history")
    assert points(page, second.run_id) == -1
    picker = page.locator(".choices__input--cloned").first
    picker.click()
    picker.fill("second-run")
    page.locator(".choices__item--choice", has_text="second-run").first.click()
    wait_for(lambda: points(page, second.run_id) == 15, 30, "the picked run's plots")
    assert points(page, first.run_id) == 10


def test_sql_page_answers(
    collector: CollectorProcess, ui_server: UIServer, trainers: list[Trainer], tmp_path: Path, page: Any
) -> None:
    trainer = Trainer(collector, tmp_path, "sql-run")
    trainers.append(trainer)
    trainer.log(12)
    wait_for(lambda: _logged(collector, trainer.run_id, 12), 30, "rows committed")
    open_page(page, ui_server.url + "/sql")
    box = page.locator("textarea").first
    box.fill("SELECT count(*) AS n_rows, max(episode) AS top FROM episodes")
    page.get_by_role("button", name="Run query").click()
    page.get_by_text("1 row in", exact=False).wait_for()
    page.locator("td", has_text="12").first.wait_for()
    box.fill("DELETE FROM episodes")
    page.get_by_role("button", name="Run query").click()
    page.get_by_text("error:", exact=False).wait_for()
    assert collector.scalar("SELECT count(*) FROM episodes") == 12
    with page.expect_download() as dl:
        page.get_by_role("button", name="Download CSV").click()
    assert dl.value.suggested_filename.endswith(".csv")


def test_compare_page_overlays_runs(
    collector: CollectorProcess, ui_server: UIServer, trainers: list[Trainer], tmp_path: Path, page: Any
) -> None:
    a = Trainer(collector, tmp_path, "cmp-a", seed=3)
    b = Trainer(collector, tmp_path, "cmp-b", seed=4)
    trainers += [a, b]
    a.log(20)
    b.log(25)
    wait_for(lambda: _logged(collector, a.run_id, 20) and _logged(collector, b.run_id, 25), 30, "rows")
    open_page(page, ui_server.url + "/compare")
    wait_for(lambda: points(page, a.run_id) == 20 and points(page, b.run_id) == 25, 30, "both overlays")
    page.get_by_text("Hyperparameters", exact=True).wait_for()
    page.locator("td", has_text="gamma").first.wait_for()


@pytest.mark.parametrize("theme", ["cyberpunk", "dark", "light"])
def test_each_theme_renders(
    collector: CollectorProcess, trainers: list[Trainer], tmp_path: Path, page: Any, theme: str
) -> None:
    trainer = Trainer(collector, tmp_path, f"theme-{theme}")
    trainers.append(trainer)
    trainer.log(15)
    wait_for(lambda: _logged(collector, trainer.run_id, 15), 30, "rows committed")
    server = start_ui(collector, tmp_path / "ui", theme=theme)
    try:
        open_page(page, server.url + "/")
        assert plots(page) == sorted(PLOTS)
        wait_for(lambda: points(page, trainer.run_id) == 15, 30, "history")
        bg = page.evaluate("""() => { for (const d of Bokeh.documents) { for (const m of d.all_models) {
            if (m.name === 'plot:profit') { return m.background_fill_color; } } } return null; }""")
        from traindash.ui.themes import get_theme

        assert bg == get_theme(theme).plot_bg
        page.get_by_text("Best profit", exact=True).wait_for()
    finally:
        server.children.stop()


def test_long_run_is_downsampled_and_refined_on_zoom(
    collector: CollectorProcess, ui_server: UIServer, trainers: list[Trainer], tmp_path: Path, page: Any
) -> None:
    trainer = Trainer(collector, tmp_path, "long")
    trainers.append(trainer)
    trainer.log(12_000)
    wait_for(lambda: _logged(collector, trainer.run_id, 12_000), 60, "the long run committed")
    open_page(page, f"{ui_server.url}/?run={trainer.run_id}")
    shown = wait_for(lambda: max(points(page, trainer.run_id), 0), 30, "history")
    assert shown < 12_000  # downsampled in DuckDB
    js = """(name) => { for (const d of Bokeh.documents) { for (const m of d.all_models) {
        if (m.name === name) { return m.data.episode.filter(e => e >= 1000 && e <= 1500).length; }
        } } return -1; }"""

    def in_window() -> int:
        return page.evaluate(js, f"episodes:{trainer.run_id}")

    assert in_window() < 501
    page.evaluate("""() => { for (const d of Bokeh.documents) { for (const m of d.all_models) {
        if (m.name === 'plot:profit') { m.x_range.start = 1000; m.x_range.end = 1500; } } } }""")
    wait_for(lambda: in_window() == 501, 30, "every row of the zoomed window")


def _health(server: UIServer) -> dict[str, Any]:
    import json
    import urllib.request

    with urllib.request.urlopen(server.url + "/healthz", timeout=5) as resp:
        return json.loads(resp.read())


def test_sessions_share_one_feed_and_are_cleaned_up(
    collector: CollectorProcess, ui_server: UIServer, trainers: list[Trainer], tmp_path: Path, chromium: Any
) -> None:
    trainer = Trainer(collector, tmp_path, "sessions").start()
    trainers.append(trainer)
    # The warm-up visits at start-up are sessions too; wait until they have been let go.
    wait_for(lambda: _health(ui_server)["sessions"] == 0, 60, "start-up sessions to end")
    contexts = [chromium.new_context() for _ in range(2)]
    try:
        for ctx in contexts:
            open_page(ctx.new_page(), f"{ui_server.url}/?run={trainer.run_id}")
        wait_for(lambda: _health(ui_server)["sessions"] == 2, 30, "two live sessions")
        before = _health(ui_server)["rows_received"]
        wait_for(lambda: _health(ui_server)["rows_received"] > before, 30, "the shared feed to receive rows")
    finally:
        for ctx in contexts:
            ctx.close()
    wait_for(lambda: _health(ui_server)["sessions"] == 0, 60, "closed tabs' sessions to be cleaned up")
    assert _health(ui_server)["feed_alive"]

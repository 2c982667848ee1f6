"""RL runs in headless Chromium: the live scalars section, the x-axis switch, the objective."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness import CollectorProcess, wait_for
from tests.ui.conftest import UIServer
from tests.ui.pagejs import named, open_page, points
from traindash.producer import MetricsLogger
from traindash.ui.figures import EPISODE_PLOTS

pytestmark = pytest.mark.browser

GLYPH_X = """(keys) => {
  const out = {};
  for (const doc of Bokeh.documents) { for (const m of doc.all_models) {
    if (!m.name || !keys.includes(m.name)) { continue; }
    out[m.name] = [...new Set(m.renderers.filter(r => r.glyph && r.glyph.x)
                                          .map(r => r.glyph.x.field))];
  } }
  return out;
}"""


class RLTrainer:
    """Logs RL episodes (return, env step) and TensorBoard-style scalars from a thread."""

    def __init__(self, collector: CollectorProcess, tmp_path: Path, name: str) -> None:
        self.logger = MetricsLogger(
            "rl-ui",
            output_dir=str(tmp_path / name),
            name=name,
            objective="episode_return",
            config=collector.producer_config(),
        )
        self.episode = 0
        self.groups = ["losses", "charts"]
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def log(self, n: int) -> None:
        for _ in range(n):
            self.episode += 1
            step = self.episode * 500
            self.logger.log_episode(
                self.episode, episode_return=float(self.episode % 37), episode_length=500, env_step=step
            )
            values = {}
            for g in self.groups:
                values[f"{g}/a"] = self.episode * 0.1
                values[f"{g}/b"] = 1.0 / self.episode
            self.logger.log(values, step=step)

    def _run(self) -> None:
        while not self.stop_event.wait(0.03):
            self.log(1)

    def start(self) -> RLTrainer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(10)
        self.logger.close()


@pytest.fixture
def rl_trainer(collector: CollectorProcess, tmp_path: Path) -> Iterator[RLTrainer]:
    trainer = RLTrainer(collector, tmp_path, "rl-run")
    try:
        yield trainer
    finally:
        trainer.close()


def _committed(collector: CollectorProcess, n: int) -> bool:
    return collector.scalar("SELECT count(*) FROM episodes") >= n


def test_scalars_section_grows_live(
    collector: CollectorProcess, ui_server: UIServer, rl_trainer: RLTrainer, page: Any
) -> None:
    run_id = rl_trainer.logger.run_id
    rl_trainer.log(20)
    wait_for(lambda: _committed(collector, 20), 30, "history committed")
    open_page(page, f"{ui_server.url}/?run={run_id}")
    key = f"scalar:{run_id}:losses/a"
    first = wait_for(lambda: named(page).get(key, 0), 30, "the scalars history")
    assert first >= 20
    assert {"scalars:losses", "scalars:charts"} <= set(named(page))
    rl_trainer.start()
    wait_for(lambda: named(page).get(key, 0) >= first + 10, 60, "streamed scalars to reach the chart")
    rl_trainer.groups.append("perf")  # a group first logged while the page is open
    wait_for(lambda: "scalars:perf" in named(page), 60, "a chart for the new group")
    wait_for(lambda: named(page).get(f"scalar:{run_id}:perf/b", 0) > 0, 60, "its rows")
    page.get_by_text("Latest episode return", exact=True).wait_for()


def test_axis_switch_redraws_every_episode_plot_against_env_step(
    collector: CollectorProcess, ui_server: UIServer, rl_trainer: RLTrainer, page: Any
) -> None:
    run_id = rl_trainer.logger.run_id
    rl_trainer.log(30)
    wait_for(lambda: _committed(collector, 30), 30, "history committed")
    open_page(page, f"{ui_server.url}/?run={run_id}")
    wait_for(lambda: points(page, run_id) == 30, 30, "the run's history")
    keys = [f"plot:{k}" for k in EPISODE_PLOTS]
    assert set().union(*page.evaluate(GLYPH_X, keys).values()) == {"episode"}
    page.get_by_role("button", name="env step").click()
    wait_for(
        lambda: (
            (xs := page.evaluate(GLYPH_X, keys))
            and len(xs) == len(keys)
            and set().union(*xs.values()) == {"env_step"}
        ),
        30,
        "every episode plot to follow env_step",
    )
    # The shared x range now spans env steps (500 per episode), not episodes.
    end = page.evaluate("""() => { for (const d of Bokeh.documents) { for (const m of d.all_models) {
        if (m.name === 'plot:profit') { return m.x_range.end; } } } return null; }""")
    wait_for(
        lambda: (
            (
                page.evaluate("""() => { for (const d of Bokeh.documents) { for (const m of d.all_models) {
            if (m.name === 'plot:profit') { return m.x_range.end; } } } return 0; }""")
                or 0
            )
            > 1000
        ),
        30,
        f"the x range to cover env steps (was {end})",
    )
    page.get_by_role("button", name="wall time").click()
    wait_for(lambda: set().union(*page.evaluate(GLYPH_X, keys).values()) == {"wall"}, 30, "wall time")

"""The compare page's groups section in headless Chromium: two configurations of 5 seeds each,
logged through real MetricsLoggers to a real collector, drawn as two bands with their table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.harness import CollectorProcess, wait_for
from tests.ui.conftest import UIServer
from tests.ui.pagejs import open_page
from traindash.producer import MetricsLogger

pytestmark = pytest.mark.browser

SEEDS = 5
LRS = (0.001, 0.01)

# group sources (x range, band order) and band renderers (glyph type), read from BokehJS
GROUPS = """() => {
  const out = {};
  for (const doc of Bokeh.documents) {
    for (const m of doc.all_models) {
      if (!m.name) { continue; }
      if (m.name.startsWith("group:") && m.data && m.data.x) {
        const x = Array.from(m.data.x), lo = Array.from(m.data.low), hi = Array.from(m.data.high);
        out[m.name] = {
          n: x.length, xmin: Math.min(...x), xmax: Math.max(...x),
          ordered: lo.every((v, i) => v <= hi[i] + 1e-9),
          wide: lo.some((v, i) => v < hi[i]),
        };
      } else if (m.name.startsWith("band:") && m.glyph) {
        out[m.name] = {glyph: m.glyph.type};
      }
    }
  }
  return out;
}"""


def _episodes(seed: int) -> int:
    return 30 + 4 * seed  # seeds of different lengths: the band stops at the shortest


def log_seeds(collector: CollectorProcess, tmp_path: Path) -> MetricsLogger:
    """Log both groups; the first group's seed 0 (its shortest) stays open, still running."""
    still_running = None
    for slope, lr in enumerate(LRS, start=1):
        for seed in range(SEEDS):
            logger = MetricsLogger(
                "seeds",
                output_dir=str(tmp_path / f"lr{lr}-s{seed}"),
                name=f"lr{lr}-s{seed}",
                hyperparameters={"lr": lr, "gamma": 0.99, "seed": seed},
                config=collector.producer_config(),
            )
            for ep in range(1, _episodes(seed) + 1):
                logger.log_episode(ep, profit=slope * ep + seed, env_step=ep * (100 + seed))
            if still_running is None:
                still_running = logger
                logger.flush()
            else:
                logger.close()
    total = sum(_episodes(s) for s in range(SEEDS)) * len(LRS)
    wait_for(
        lambda: collector.scalar("SELECT count(*) FROM episodes") >= total, 30, "every episode committed"
    )
    assert still_running is not None
    return still_running


def _bands(page: Any) -> dict[str, Any]:
    """Both groups' sources once they hold points, else nothing yet."""
    found = page.evaluate(GROUPS)
    ready = all(found.get(f"group:lr={lr}", {}).get("n", 0) > 0 for lr in LRS)
    return found if ready else {}


def test_two_groups_of_five_seeds_drawn_as_bands_with_their_table(
    collector: CollectorProcess, ui_server: UIServer, tmp_path: Path, page: Any
) -> None:
    running = log_seeds(collector, tmp_path)
    try:
        check_page(page, ui_server.url, running)
    finally:
        running.close()


def check_page(page: Any, url: str, running: MetricsLogger) -> None:
    open_page(page, url + "/compare")
    found = wait_for(lambda: _bands(page), 60, "both groups' bands")
    shortest = min(_episodes(s) for s in range(SEEDS))
    for lr in LRS:
        band = found[f"group:lr={lr}"]
        # every run has reached episodes 1..30, and only those: a whole-episode grid
        assert band["xmin"] == 1 and band["xmax"] == shortest and band["n"] == shortest
        assert band["ordered"] and band["wide"]  # seeds differ: a band, not a line
        assert found[f"band:lr={lr}"]["glyph"] == "VArea"
    page.locator("td.g-label", has_text="lr=0.01").first.wait_for()
    assert page.locator("td.g-label").all_inner_texts() == ["lr=0.001", "lr=0.01"]
    assert page.locator("td.g-n").all_inner_texts() == [str(SEEDS), str(SEEDS)]
    assert page.locator("th", has_text="P(X > Y)").count() == 1
    assert page.locator("td.g-running").all_inner_texts() == ["1", "0"]

    # live: the running seed goes on, and its group's band follows up to the next shortest seed
    for ep in range(_episodes(0) + 1, _episodes(0) + 11):
        running.log_episode(ep, profit=ep, env_step=ep * 100)
    running.flush()

    def grown() -> dict[str, Any]:
        found = _bands(page)
        return found if found and found["group:lr=0.001"]["xmax"] == _episodes(1) else {}

    found = wait_for(grown, 60, "the band to follow the running seed")
    assert found["group:lr=0.01"]["xmax"] == shortest

    # the env-step axis, picked in the URL: the band ends where the shortest seed's steps end
    open_page(page, url + "/compare?x=env_step")

    def env_bands() -> dict[str, Any]:
        found = _bands(page)
        return found if found and found["group:lr=0.01"]["xmax"] > shortest else {}

    found = wait_for(env_bands, 60, "env-step bands")
    # seed s logs env_step = episode * (100 + s), from 100 + s on: both groups start at 104;
    # lr=0.01 ends at 3000 (seed 0's last step), lr=0.001 at 3434 (seed 1's, now its shortest)
    a, b = found["group:lr=0.001"], found["group:lr=0.01"]
    assert a["xmin"] == b["xmin"] == 104
    assert a["xmax"] == pytest.approx(3434) and a["xmax"] <= 3434
    assert 2990 < b["xmax"] <= 3000

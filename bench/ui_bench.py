"""UI benchmark: first paint of a 1,000,000-episode run and log-to-screen lag.

Everything is real: a collector on free ports, one MetricsLogger writing the long run
through the pipeline, the ``traindash ui`` server, and headless Chromium reading the
page through BokehJS.

    .venv/bin/python bench/ui_bench.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from traindash.config import Endpoints, ProducerConfig  # noqa: E402
from traindash.producer import MetricsLogger  # noqa: E402
from traindash.query import QueryClient  # noqa: E402
from traindash.ui.processes import (  # noqa: E402
    Children,
    free_port,
    start_collector_on_free_ports,
    start_ui,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
UPDATE_INTERVAL_MS = 200
SOURCE_ROWS_JS = """(name) => { for (const d of (window.Bokeh ? Bokeh.documents : [])) {
  for (const m of d.all_models) { if (m.name === name) { return m.data.seq.length; } } } return -1; }"""
PAINTED_JS = "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))"


def _row(metric: str, value: float | None, unit: str, note: str = "") -> dict[str, Any]:
    return {
        "benchmark": "ui",
        "tool": "traindash",
        "metric": metric,
        "value": None if value is None else round(float(value), 4),
        "unit": unit,
        "note": note,
    }


def _wait(cond: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))]


def _count(client: QueryClient, run_id: str) -> int:
    return int(client.query(f"SELECT count(*) FROM episodes WHERE run_id = '{run_id}'").column(0)[0].as_py())


def _long_run(ep: Endpoints, out: Path, n: int) -> tuple[str, float]:
    logger = MetricsLogger(
        "bench-long",
        output_dir=str(out),
        name="long-run",
        config=ProducerConfig(endpoints=ep, close_timeout=120),
    )
    started = time.perf_counter()
    for i in range(1, n + 1):
        x = i / n
        logger.log_episode(
            episode=i,
            profit=50 * x + ((i * 7919) % 200 - 100),
            sharpe=2 * x - 0.5,
            win_rate=0.4 + 0.2 * x,
            drawdown=float(i % 500),
            epsilon=max(0.01, 1 - x),
            learning_rate=1e-3 * 0.5 ** (i // (n // 4 + 1)),
        )
        if i % 10 == 0:
            logger.log_model_metrics(loss=5 * (1 - x) + 0.1, q_values=[x, 2 * x, 3 * x])
    logger.close()
    return logger.run_id, time.perf_counter() - started


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure; returns result rows (``value`` None with a note when a figure failed)."""
    from playwright.sync_api import sync_playwright

    n = 100_000 if quick else 1_000_000
    lag_seconds = 6.0 if quick else 15.0
    label = "100k" if quick else "1M"
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="td-uibench-") as tmp:
        tmpdir = Path(tmp)
        children = Children(tmpdir)
        try:
            ep = start_collector_on_free_ports(children, tmpdir / "td.duckdb", cwd=ROOT)
            port = free_port()
            run_id, log_s = _long_run(ep, tmpdir, n)
            with QueryClient(ep.query, timeout=30) as client:
                _wait(lambda: _count(client, run_id) >= n, 120, "the long run to be committed", 0.25)
            rows.append(
                _row(
                    f"log_{label}_episodes_s",
                    log_s,
                    "s",
                    "one MetricsLogger, log calls through close() (acked)",
                )
            )
            url = start_ui(children, ep, "127.0.0.1", port, "cyberpunk", UPDATE_INTERVAL_MS, cwd=ROOT)
            url = url.rstrip("/")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    rows += _first_paint(browser, url, run_id, label, 2 if quick else 3)
                    rows += _lag(browser, url, ep, tmpdir, lag_seconds)
                finally:
                    browser.close()
        finally:
            children.stop()
    return rows


def _first_paint(browser: Any, url: str, run_id: str, label: str, attempts: int) -> list[dict[str, Any]]:
    """Open the long run in fresh tabs; the first visit is a new session of a warmed-up server."""
    times, server, points, model_points = [], [], 0, 0
    for _ in range(attempts):
        page = browser.new_page(viewport={"width": 1400, "height": 1400})
        try:
            started = time.perf_counter()
            page.goto(f"{url}/?run={run_id}")
            page.wait_for_function(f"() => ({SOURCE_ROWS_JS})('episodes:{run_id}') > 0", timeout=120_000)
            page.evaluate(PAINTED_JS)
            times.append(time.perf_counter() - started)
            server.append(
                page.evaluate("() => performance.getEntriesByType('navigation')[0].responseEnd") / 1000
            )
            points = page.evaluate(SOURCE_ROWS_JS, f"episodes:{run_id}")
            model_points = page.evaluate(SOURCE_ROWS_JS, f"model:{run_id}")
        finally:
            page.close()
    load = os.getloadavg()[0]
    note = (
        f"navigation until the 8 plots hold the downsampled history and a frame is painted; "
        f"{attempts} visits: {', '.join(f'{t:.2f}' for t in times)} s (page HTML "
        f"{statistics.median(server):.2f} s of it); 1-min load average {load:.1f} on "
        f"{os.cpu_count()} cores"
    )
    return [
        _row(f"first_paint_{label}_episodes_s", statistics.median(times), "s", note),
        _row(f"first_paint_{label}_episodes_best_s", min(times), "s", "best of the visits above"),
        _row(
            f"points_sent_{label}_episodes",
            points,
            "rows",
            f"episode rows of the run sent to the browser (model rows: {model_points})",
        ),
    ]


def _lag(browser: Any, url: str, ep: Endpoints, tmpdir: Path, seconds: float) -> list[dict[str, Any]]:
    logger = MetricsLogger(
        "bench-lag", output_dir=str(tmpdir), name="lag-run", config=ProducerConfig(endpoints=ep)
    )
    stop = threading.Event()

    def trainer() -> None:
        i = 0
        while not stop.wait(0.05):
            i += 1
            logger.log_episode(episode=i, profit=float(i % 17), sharpe=1.0, win_rate=0.5)

    thread = threading.Thread(target=trainer, daemon=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1400})
    try:
        logger.log_episode(episode=0, profit=0.0)
        logger.flush(10)
        started = time.perf_counter()
        page.goto(f"{url}/?run={logger.run_id}")
        page.wait_for_function(f"() => ({SOURCE_ROWS_JS})('episodes:{logger.run_id}') > 0", timeout=60_000)
        page.evaluate(PAINTED_JS)
        baseline = time.perf_counter() - started
        thread.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            page.wait_for_timeout(250)  # lets the page's event loop run; samples accumulate in JS
        lags = page.evaluate("() => window.traindash_lags || []")
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(5)
        logger.close()
        page.close()
    base_row = _row(
        "first_paint_1_episode_s",
        baseline,
        "s",
        "the same page for a one-episode run: what the page costs without a long history",
    )
    if not lags:
        return [base_row, _row("log_to_screen_lag_p50_ms", None, "ms", "no streamed update reached the page")]
    ms = [x * 1000 for x in lags]
    note = (
        f"{len(ms)} page updates at update_interval={UPDATE_INTERVAL_MS} ms, trainer at 20 episodes/s; "
        "log call time to the newest row on screen (browser clock, same host)"
    )
    return [
        base_row,
        _row("log_to_screen_lag_p50_ms", _pct(ms, 50), "ms", note),
        _row("log_to_screen_lag_p99_ms", _pct(ms, 99), "ms", note),
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100k episodes and a shorter lag window")
    args = ap.parse_args()
    for r in run(quick=args.quick):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())

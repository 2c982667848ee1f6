"""Take docs/dashboard.png: collector, demo trainers and ui on free ports, then Chromium.

.venv/bin/python scripts/screenshot.py [--out docs/dashboard.png] [--theme cyberpunk]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from traindash.ui.processes import (  # noqa: E402
    Children,
    endpoint_env,
    endpoint_flags,
    free_port,
    start_collector_on_free_ports,
    start_ui,
    traindash,
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
POINTS_JS = """() => { let n = []; for (const d of Bokeh.documents) { for (const m of d.all_models) {
  if (m.name && m.name.startsWith('episodes:')) { n.push(m.data.seq.length); } } }
  return n.length ? Math.min(...n) : 0; }"""


def wait(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    ap.add_argument("--theme", default="cyberpunk")
    ap.add_argument("--page", default="/", help="page path, e.g. /compare")
    ap.add_argument("--points", type=int, default=600, help="episodes per run before the shot")
    ap.add_argument("--trainers", type=int, default=3)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="td-shot-") as tmp:
        children = Children(Path(tmp))
        try:
            ep = start_collector_on_free_ports(children, Path(tmp) / "td.duckdb", cwd=ROOT)
            port = free_port()
            # The alerts process fills the alert feed (new best, no improvement, ...).
            children.start(
                "alerts",
                traindash("alerts", *endpoint_flags(ep), "--dashboard-url", f"http://127.0.0.1:{port}"),
                cwd=ROOT,
            )
            children.start(
                "demo",
                traindash("demo", "--trainers", str(args.trainers), "--interval", "0.02"),
                cwd=ROOT,
                env=endpoint_env(ep),
            )
            url = start_ui(children, ep, "127.0.0.1", port, args.theme, 1000, cwd=ROOT).rstrip("/")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 1400}, device_scale_factor=1)
                page.goto(url + args.page)
                page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
                wait(lambda: page.evaluate(POINTS_JS) >= args.points, 180, "the plots to fill")
                if args.page == "/":
                    wait(
                        lambda: page.evaluate("() => (window.traindash_lags || []).length") >= 3,
                        60,
                        "a few streamed updates",
                    )
                time.sleep(1.5)  # let the last stream and the canvas repaint settle before the shot
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=args.out, full_page=True, timeout=120_000)
                browser.close()
        finally:
            children.stop()
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

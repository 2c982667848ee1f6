"""A notebook on a real Jupyter kernel (nbclient) queries runs and renders a live view that streams."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.harness import CollectorProcess, wait_for
from traindash.producer import MetricsLogger

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

pytestmark = [pytest.mark.slow]

CELLS = [
    "import asyncio\nimport panel as pn\nimport traindash\npn.extension()\n"
    "con = traindash.connect()\nruns = con.runs().df()\nassert len(runs) == 1, runs\n"
    "run_id = runs.run_id[0]\n"
    "assert con.history(run_id, ['profit']).df().profit.notna().all()",
    "from traindash.ui.notebook import live_view\nview = live_view([run_id])\nview",
    "for _ in range(300):\n    await asyncio.sleep(0.1)\n    if view.streamed >= 5:\n        break\n"
    "assert view.streamed >= 5, view.streamed\n"
    "assert len(view.sources[run_id].episodes.data['episode']) >= 10\nview.stop()",
]


def test_a_notebook_queries_runs_and_streams_a_live_view(td_env: CollectorProcess, tmp_path: Path) -> None:
    collector = td_env.start()
    stop = threading.Event()
    with MetricsLogger(
        "notebook", output_dir=str(tmp_path / "logs"), config=collector.producer_config()
    ) as logger:
        for e in range(1, 11):
            logger.log_episode(e, profit=float(e))
        logger.flush()
        wait_for(lambda: collector.scalar("SELECT count(*) FROM episodes") == 10, 30, "the first episodes")

        def keep_logging() -> None:
            e = 10
            while not stop.wait(0.05):
                e += 1
                logger.log_episode(e, profit=float(e))

        thread = threading.Thread(target=keep_logging, daemon=True)
        thread.start()
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=90, resources={"metadata": {"path": str(tmp_path)}}
        )
        try:
            client.execute()
        finally:
            stop.set()
            thread.join(5)
    outputs = nb.cells[1].outputs
    assert any(
        "application/vnd.holoviews_load.v0+json" in o.get("data", {}) or "text/html" in o.get("data", {})
        for o in outputs
    ), outputs

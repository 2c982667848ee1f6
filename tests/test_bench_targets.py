"""bench/run.py holds a run's rows against issue 7's targets; a miss must show."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "bench_run", Path(__file__).resolve().parent.parent / "bench" / "run.py"
)
assert _spec is not None and _spec.loader is not None
bench_run = importlib.util.module_from_spec(_spec)
sys.modules["bench_run"] = bench_run  # dataclasses look their module up
_path = list(sys.path)
try:
    _spec.loader.exec_module(bench_run)
finally:
    sys.path[:] = _path  # run.py puts bench/ first, for its own modules


def _row(benchmark: str, tool: str, metric: str, value: float | None) -> dict:
    return {"benchmark": benchmark, "tool": tool, "metric": metric, "value": value, "unit": "", "note": ""}


def test_the_worst_matching_row_decides() -> None:
    rows = [
        _row("ingest", f"traindash, {n} trainer{'s' if n > 1 else ''}", "rows/s committed", v)
        for n, v in ((1, 900_000.0), (2, 390_000.0), (8, 1_200_000.0))
    ]
    rows.append(_row("ingest", "traindash, 1 trainer at 10,000/s", "rows/s committed", 1.0))
    table, missed = bench_run.targets_markdown(rows)
    line = next(x for x in table.splitlines() if x.startswith("| collector rows/s"))
    assert "390,000 rows/s" in line and "**no**" in line
    assert missed == 1  # the others were not measured: not counted as missed
    assert table.count("not measured") == len(bench_run.TARGETS) - 1


def test_both_senders_must_meet_the_overhead_target() -> None:
    tool = "traindash ({} sender), busy-wait 1 ms, log_episode"
    rows = [
        _row("training_overhead", tool.format("thread"), "wall-time overhead", 0.05),
        _row("training_overhead", tool.format("process"), "wall-time overhead", 0.12),
        _row(
            "training_overhead",
            tool.format("thread") + " + log_model_metrics every 5th",
            "wall-time overhead",
            9.0,
        ),
    ]
    target = next(t for t in bench_run.TARGETS if t.metric == "wall-time overhead")
    assert target.value(rows) == 0.12
    assert target.met(0.12) is False and target.met(0.099) is True and target.met(None) is None

"""Helpers shared by bench/peers.py, bench/overhead.py and bench/ingest_scale.py.

A result row is ``{"benchmark", "tool", "metric", "value", "unit", "note"}``; ``value`` is
``None`` when the figure could not be measured (``note`` says why).
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

RESULT_MARK = "BENCH_RESULT "

#: The eight scalars of one episode, as every tool is asked to log them.
EPISODE_KEYS = (
    "episode",
    "profit",
    "sharpe",
    "win_rate",
    "drawdown",
    "num_trades",
    "epsilon",
    "learning_rate",
)


def row(
    benchmark: str, tool: str, metric: str, value: float | None, unit: str, note: str = ""
) -> dict[str, Any]:
    """One result row in the bench/run.py contract."""
    return {
        "benchmark": benchmark,
        "tool": tool,
        "metric": metric,
        "value": None if value is None else float(value),
        "unit": unit,
        "note": note,
    }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no samples")
    n = len(sorted_values)
    k = min(n - 1, max(0, int(round(q / 100 * n + 0.5)) - 1))
    return sorted_values[k]


def median(values: Iterable[float]) -> float:
    vals = sorted(values)
    n = len(vals)
    if not n:
        raise ValueError("no samples")
    mid = n // 2
    return vals[mid] if n % 2 else (vals[mid - 1] + vals[mid]) / 2


def time_calls(fn: Callable[[int], Any], n: int, start: int = 0, budget_s: float | None = None) -> list[int]:
    """Time ``fn(i)`` for ``i`` in ``start..start+n`` with ``perf_counter_ns``; ns per call.

    Stops early (returning fewer samples) once ``budget_s`` of wall time has passed, so a
    slow tool cannot hold the whole run hostage; the caller reports how many it got.
    """
    clock = time.perf_counter_ns
    out = [0] * n
    deadline = None if budget_s is None else clock() + int(budget_s * 1e9)
    done = n
    for j in range(n):
        t0 = clock()
        fn(start + j)
        t1 = clock()
        out[j] = t1 - t0
        if deadline is not None and t1 > deadline and (j & 63) == 63:
            done = j + 1
            break
    return out[:done]


def call_stats(
    fn: Callable[[int], Any], calls: int, warmup: int, budget_s: float | None = None
) -> dict[str, Any]:
    """Warm up, then time ``calls`` calls of ``fn``; p50/p99/mean in microseconds."""
    time_calls(fn, warmup, 0, budget_s=None if budget_s is None else budget_s / 4)
    gc.collect()
    t0 = time.perf_counter()
    samples = time_calls(fn, calls, warmup, budget_s=budget_s)
    wall = time.perf_counter() - t0
    samples.sort()
    return {
        "calls": len(samples),
        "p50_us": percentile(samples, 50) / 1e3,
        "p99_us": percentile(samples, 99) / 1e3,
        "mean_us": sum(samples) / len(samples) / 1e3,
        "wall_s": wall,
    }


def emit_result(payload: dict[str, Any]) -> None:
    """Print a child's result on one marked line (the parent parses only that line)."""
    sys.stdout.write(RESULT_MARK + json.dumps(payload) + "\n")
    sys.stdout.flush()


def run_child(
    args: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Run ``python args...``; return (the child's marked JSON result or None, why not)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.setdefault("PYTHONUNBUFFERED", "1")
    if env:
        full_env.update(env)
    # Its own session, so that whatever it starts (a collector, wandb's service) can be
    # ended with it: the whole process group goes once the child is done or timed out.
    proc = subprocess.Popen(
        [sys.executable, *args],
        env=full_env,
        cwd=cwd or ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc.pid)
        proc.communicate()
        return None, f"timed out after {timeout:g} s"
    finally:
        _kill_group(proc.pid)
    for line in reversed(stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :]), ""
    tail = (stderr or stdout).strip().splitlines()[-3:]
    return None, f"exit {proc.returncode}: " + " | ".join(t.strip() for t in tail)[:300]


def _kill_group(pgid: int) -> None:
    """SIGKILL what is left of a process group this module started (nothing else)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of result rows."""

    def fmt(v: float | None) -> str:
        if v is None:
            return "n/a"
        if v == 0 or abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.2f}"

    cols = [
        ("benchmark", lambda r: r["benchmark"]),
        ("tool", lambda r: r["tool"]),
        ("metric", lambda r: r["metric"]),
        ("value", lambda r: fmt(r["value"])),
        ("unit", lambda r: r["unit"]),
        ("note", lambda r: r["note"]),
    ]
    cells = [[get(r) for _, get in cols] for r in rows]
    widths = [max([len(name)] + [len(c[i]) for c in cells]) for i, (name, _) in enumerate(cols)]
    widths[-1] = len(cols[-1][0])  # notes run on without padding
    line = "  ".join(name.ljust(w) for (name, _), w in zip(cols, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    for c in cells:
        out.append(
            "  ".join(
                v.rjust(w) if i == 3 else v.ljust(w) for i, (v, w) in enumerate(zip(c, widths, strict=True))
            ).rstrip()
        )
    return "\n".join(out)


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{title}  ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{os.cpu_count()} CPUs, shared machine: compare within a run)"
    )
    print(format_table(rows))


def rows_arrived(sub: Any, timeout_ms: int) -> tuple[Any, Any] | None:
    """Wait up to ``timeout_ms`` for one message on a rows-socket SUB; for committed rows,
    ``(log -> commit seconds, logged ts)`` per row (arrival is taken as commit time)."""
    import numpy as np

    from traindash import wire

    if not sub.poll(timeout_ms):
        return None
    frames = sub.recv_multipart()
    arrived = time.time()
    msg = wire.decode(frames)
    if not isinstance(msg, wire.Rows):
        return None
    ts = np.asarray(msg.section.cols["ts"], dtype=np.float64)
    return arrived - ts, ts

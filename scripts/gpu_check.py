"""Run the system-metrics sampler alone on a GPU machine: no collector, no traindash install.

    python scripts/gpu_check.py [--seconds 5] [--interval 0.5]

Needs only Python 3.10+, psutil and nvidia-ml-py (``pip install psutil nvidia-ml-py``):
``producer/system.py`` is loaded by its file path, so neither the traindash package nor
pyzmq, msgpack or DuckDB are imported. It samples this process, the host and every GPU
NVML sees for ``--seconds`` at ``--interval``, prints each sample's GPU rows and CPU cost,
and exits with:

* 0 when GPU rows came (or NVML does not start here: no driver is not an error; it says so),
* 1 when NVML started but no GPU rows came, or a GPU row lacks a figure every NVIDIA GPU
  of the last decade reports (utilisation, memory used and total),
* 2 when psutil or the sampler itself cannot be loaded.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType

SYSTEM_PY = Path(__file__).resolve().parent.parent / "producer" / "system.py"
REQUIRED = ("gpu_util_percent", "gpu_mem_used_bytes", "gpu_mem_total_bytes")


def load_sampler() -> ModuleType:
    spec = importlib.util.spec_from_file_location("traindash_system_standalone", SYSTEM_PY)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {SYSTEM_PY}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to sample (default 5)")
    ap.add_argument("--interval", type=float, default=0.5, help="seconds between samples (default 0.5)")
    args = ap.parse_args()
    try:
        system = load_sampler()
    except ImportError as exc:
        print(f"gpu_check: cannot load the sampler: {exc}", file=sys.stderr)
        return 2
    loaded = sorted(n for n in ("zmq", "duckdb", "msgpack", "traindash") if n in sys.modules)
    sampler = system.SystemSampler()
    nvml = sampler.nvml
    print(f"host {sampler.host}, pid {sampler.pid}; also imported: {loaded or 'nothing of traindash'}")
    if nvml is None or not nvml.available:
        print(f"NVML did not start ({nvml.error if nvml else 'off'}): no GPU rows, as designed")
    else:
        print(
            f"NVML started; {len(nvml.gpus)} GPU(s): "
            + ", ".join(f"{g.index} {g.name} {g.uuid}" for g in nvml.gpus)
        )
    costs: list[float] = []
    gpu_rows: list[dict] = []
    bad: list[str] = []
    deadline = time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(args.interval)
            c0, w0 = time.thread_time(), time.perf_counter()
            rows = sampler.sample()
            cpu_ms, wall_ms = (time.thread_time() - c0) * 1e3, (time.perf_counter() - w0) * 1e3
            costs.append(cpu_ms)
            host = rows[0]
            nan = float("nan")
            print(
                f"sample: {len(rows) - 1} GPU row(s); CPU {cpu_ms:.2f} ms, wall {wall_ms:.2f} ms; "
                f"process cpu {host.get('cpu_percent', nan):.1f}% "
                f"rss {host.get('rss_bytes', 0) / 2**20:.0f} MiB, "
                f"host cpu {host.get('host_cpu_percent', nan):.1f}% mem {host.get('host_mem_percent')}%"
            )
            for row in rows[1:]:
                print("  " + json.dumps({k: v for k, v in row.items() if k not in ("ts", "host", "pid")}))
                missing = [k for k in REQUIRED if k not in row]
                if missing:
                    bad.append(f"GPU {row['gpu_index']} lacks {', '.join(missing)}")
            gpu_rows += rows[1:]
    finally:
        sampler.close()
    if costs:
        print(
            f"CPU per sample: median {statistics.median(costs):.2f} ms, max {max(costs):.2f} ms "
            f"over {len(costs)} samples"
        )
    if nvml is not None and nvml.available:
        if not gpu_rows:
            print("FAIL: NVML started but no GPU rows came", file=sys.stderr)
            return 1
        if bad:
            print("FAIL: " + "; ".join(sorted(set(bad))), file=sys.stderr)
            return 1
        print(f"OK: {len(gpu_rows)} GPU rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The system section's pure parts: splitting rows by GPU, the trainer table's GPU figure."""

from __future__ import annotations

import duckdb
import numpy as np

from traindash.collector.migrations.v0003_system import DDL
from traindash.ui.fleet import fleet_html
from traindash.ui.system import gpu_util_sql, split, system_figures
from traindash.ui.themes import get_theme


def test_split_streamed_sections_and_history() -> None:
    host = {
        "seq": np.array([3, 6]),
        "ts": np.array([1.0, 2.0]),
        "host": ["h", "h"],
        "rss_bytes": np.array([5.0, 6.0]),
    }
    process, gpus = split(host)
    assert gpus == {} and process["seq"].tolist() == [3, 6] and process["t"].tolist() == [1000.0, 2000.0]
    assert process["rss_bytes"].tolist() == [5.0, 6.0] and np.isnan(process["cpu_percent"]).all()
    gpu = {
        "seq": np.array([4, 5, 7]),
        "ts": np.array([1.0, 1.0, 2.0]),
        "gpu_index": np.array([0.0, 1.0, 0.0]),
        "gpu_util_percent": np.array([90.0, 10.0, 80.0]),
    }
    process, gpus = split(gpu)
    assert len(process["seq"]) == 0 and sorted(gpus) == [0, 1]
    assert gpus[0]["seq"].tolist() == [4, 7] and gpus[0]["gpu_util_percent"].tolist() == [90.0, 80.0]
    # history: one table, gpu_index NaN for the process rows, t already in ms
    history = {
        "seq": np.array([1, 2]),
        "t": np.array([5.0, 5.0]),
        "gpu_index": np.array([np.nan, 0.0]),
        "cpu_percent": np.array([12.0, np.nan]),
        "rss_bytes": np.array([1e9, np.nan]),
        "gpu_util_percent": np.array([np.nan, 50.0]),
        "gpu_mem_used_bytes": np.array([np.nan, 2e9]),
    }
    process, gpus = split(history)
    assert process["cpu_percent"].tolist() == [12.0] and gpus[0]["gpu_mem_used_bytes"].tolist() == [2e9]


def test_the_trainer_tables_gpu_figure_is_the_newest_sample_of_the_gpus_a_run_uses() -> None:
    con = duckdb.connect()
    con.execute(DDL)
    rows = [
        # run a: two GPUs, its process holds memory on GPU 1 only; the older sample is ignored
        ("a", 1, 10, 0, 99.0, 0),
        ("a", 2, 10, 1, 99.0, 1 << 30),
        ("a", 3, 20, 0, 95.0, 0),
        ("a", 4, 20, 1, 40.0, 1 << 30),
        # run b: NVML cannot tell which GPU it uses: the host's mean
        ("b", 1, 20, 0, 20.0, None),
        ("b", 2, 20, 1, 60.0, None),
    ]
    con.executemany(
        "INSERT INTO system (run_id, seq, ts, gpu_index, gpu_util_percent, gpu_proc_mem_bytes) "
        "VALUES (?, ?, make_timestamp(? * 1000000), ?, ?, ?)",
        rows,
    )
    con.execute("INSERT INTO system (run_id, seq, ts, cpu_percent) VALUES ('c', 1, now(), 50)")
    got = dict(con.execute(gpu_util_sql()).fetchall())
    assert got == {"a": 40.0, "b": 40.0}  # run c has no GPU rows
    html = fleet_html([{"name": "a", "status": "running", "gpu_util_percent": 87.4}, {"name": "c"}], now=0.0)
    assert "<th>GPU</th>" in html and "87%" in html


def test_system_figures_are_named_and_share_a_time_axis() -> None:
    figs = system_figures(get_theme("dark"))
    assert sorted(f.name for f in figs.values()) == [
        "system:cpu",
        "system:gpu_mem",
        "system:gpu_util",
        "system:rss",
    ]
    assert len({id(f.x_range) for f in figs.values()}) == 1

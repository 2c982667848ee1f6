"""The system sampler on its own: fields and units, packing, config, and the NVML path."""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest

from tests.harness import ROOT
from traindash import wire
from traindash.collector.tables import CORE_COLUMNS, SYSTEM, section_table
from traindash.config import ConfigError, ProducerConfig, load_file
from traindash.producer.packing import EPISODE, pack
from traindash.producer.packing import SYSTEM as SYSTEM_CODE
from traindash.producer.system import GPU_FIELDS, HOST_FIELDS, PROCESS_FIELDS, TAGS, Nvml, SystemSampler
from traindash.wire import RecordKind


def _busy(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_a_sample_of_this_process_and_host_has_every_field_with_its_unit() -> None:
    sampler = SystemSampler()
    try:
        _busy(0.3)
        rows = sampler.sample(ts=123.0)
    finally:
        sampler.close()
    row = rows[0]
    assert {r["ts"] for r in rows} == {123.0}
    assert (row["host"], row["pid"]) == (sampler.host, os.getpid())
    assert "gpu_index" not in row
    assert set(row) == {"ts", "host", "pid", *PROCESS_FIELDS, *HOST_FIELDS} - _missing_here()
    rss = psutil.Process().memory_info().rss
    assert 0.8 * rss < row["rss_bytes"] < 1.25 * rss
    assert row["cpu_percent"] > 0  # it just burned 0.3 s of CPU
    assert 0 <= row["host_cpu_percent"] <= 100
    mem = psutil.virtual_memory()
    assert row["host_mem_total_bytes"] == mem.total
    assert 0 < row["host_mem_used_bytes"] < mem.total and 0 < row["host_mem_percent"] < 100
    assert all(row[k] >= 0 for k in HOST_FIELDS if k in row)
    for name in (*PROCESS_FIELDS, *HOST_FIELDS, *GPU_FIELDS):
        assert name.endswith(("_percent", "_bytes", "_bytes_per_s", "_w", "_c", "_mhz")) or name.startswith(
            "load_"
        ), name


def _missing_here() -> set[str]:
    """Fields this platform cannot give (psutil returns None for them in some containers)."""
    missing = set()
    if psutil.disk_io_counters() is None:
        missing |= {"disk_read_bytes_per_s", "disk_write_bytes_per_s"}
    if not hasattr(os, "getloadavg"):
        missing |= {"load_1m", "load_5m", "load_15m"}
    return missing


def test_another_process_is_sampled_by_pid_and_a_dead_one_leaves_the_host_row() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "import time\nx = bytearray(64 << 20)\nwhile True: time.sleep(1)"],
        stdin=subprocess.DEVNULL,
    )
    try:
        sampler = SystemSampler(pid=child.pid, gpus=False)

        def rss() -> int:
            return sampler.sample()[0].get("rss_bytes", 0)

        deadline = time.monotonic() + 30
        while rss() < 64 << 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        row = sampler.sample()[0]
        assert row["pid"] == child.pid and row["rss_bytes"] >= 64 << 20
        theirs = psutil.Process(child.pid).memory_info().rss
        assert abs(row["rss_bytes"] - theirs) < 0.1 * theirs
    finally:
        child.kill()
        child.wait()
    row = sampler.sample()[0]
    assert "rss_bytes" not in row and "cpu_percent" not in row and "host_mem_percent" in row


def test_no_nvml_means_no_gpu_rows_and_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="traindash.producer.system")
    sampler = SystemSampler()
    try:
        rows = sampler.sample()
    finally:
        sampler.close()
    if sampler.nvml is not None and sampler.nvml.available:
        pytest.skip("NVML starts on this machine; test_nvml_path_reads_every_gpu covers it")
    assert len(rows) == 1 and sampler.gpu_count == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    debug = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 1 and "NVML" in debug[0]


def test_nvml_path_reads_every_gpu() -> None:
    nvml = Nvml()
    if not nvml.available:
        pytest.skip(f"NVML does not start here ({nvml.error}): no NVIDIA driver or GPU")
    nvml.close()
    sampler = SystemSampler()
    try:
        rows = sampler.sample()
        gpus = rows[1:]
        assert len(gpus) == sampler.gpu_count
        if not gpus:
            pytest.skip("NVML started but lists no GPU")
        for i, row in enumerate(gpus):
            assert row["gpu_index"] == i and row["gpu_uuid"].startswith(("GPU-", "MIG-")) and row["gpu_name"]
            assert row["host"] == sampler.host and row["pid"] == os.getpid()
            assert 0 <= row.get("gpu_util_percent", 0) <= 100
            assert 0 <= row["gpu_mem_used_bytes"] <= row["gpu_mem_total_bytes"]
            assert set(row) - set(TAGS) - {"ts"} <= set(GPU_FIELDS)
            if "gpu_temp_c" in row:
                assert 0 < row["gpu_temp_c"] < 130
            if "gpu_power_w" in row:
                assert 0 < row["gpu_power_w"] < 2000
            assert row.get("gpu_proc_mem_bytes", 0) >= 0
    finally:
        sampler.close()


def test_gpu_check_loads_the_sampler_without_zmq_or_duckdb() -> None:
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('tdsys', {str(ROOT / 'producer' / 'system.py')!r})\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['tdsys'] = m; spec.loader.exec_module(m)\n"
        "s = m.SystemSampler(); s.sample(); s.close()\n"
        "bad = [n for n in ('zmq', 'duckdb', 'traindash', 'msgpack', 'pyarrow') if n in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd="/")
    assert out.returncode == 0, out.stderr
    assert importlib.util.find_spec("pynvml") is not None  # nvidia-ml-py is a main dependency


def test_system_rows_pack_into_typed_columns_the_collector_stores() -> None:
    host = {"host": "h", "pid": 7, "cpu_percent": 12.5, "rss_bytes": 1 << 30, "host_mem_percent": 40.0}
    gpu = {
        "host": "h",
        "pid": 7,
        "gpu_index": 0,
        "gpu_uuid": "GPU-x",
        "gpu_name": "A100",
        "gpu_power_w": 80.5,
    }
    rows = [(SYSTEM_CODE, 10.0, host), (SYSTEM_CODE, 10.0, gpu), (SYSTEM_CODE, 20.0, dict(host))]
    rows.insert(1, (EPISODE, 11.0, 1, 1.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, None))
    sections = pack(rows, first_seq=5)
    system = [s for s in sections if s.kind is RecordKind.SYSTEM]
    assert sorted(int(x) for s in sections for x in s.cols["seq"]) == [5, 6, 7, 8]
    by_rows = {len(s): s for s in system}
    hosts, gpus = by_rows[2], by_rows[1]
    assert hosts.cols["seq"].tolist() == [5, 8] and hosts.cols["ts"].tolist() == [10.0, 20.0]
    assert hosts.cols["rss_bytes"].dtype == np.float64 and gpus.cols["gpu_uuid"] == ["GPU-x"]
    # the wire keeps them, and the collector maps them onto the system table's columns
    frames = wire.encode(wire.Batch("r", 5, 8, tuple(sections)))
    decoded = wire.decode(frames)
    assert isinstance(decoded, wire.Batch)
    core = CORE_COLUMNS[SYSTEM]
    for section in (s for s in decoded.sections if s.kind is RecordKind.SYSTEM):
        table, new, _ = section_table(SYSTEM, "r", section, {k: k for k in core})
        assert new == {} and set(table.column_names) <= set(core)
    table, _, _ = section_table(SYSTEM, "r", hosts, {k: k for k in core})
    assert table.column("rss_bytes").to_pylist() == [1 << 30, 1 << 30]
    assert table.column("pid").type.bit_width == 64 and table.column("host").to_pylist() == ["h", "h"]


@pytest.mark.parametrize(
    "env, expected",
    [({}, 10.0), ({"TRAINDASH_SYSTEM_INTERVAL": "2.5"}, 2.5), ({"TRAINDASH_SYSTEM_INTERVAL": "off"}, 0.0)],
)
def test_interval_from_the_environment(env: dict, expected: float) -> None:
    assert ProducerConfig.resolve({}, env, {}).system_interval == expected


def test_interval_from_the_guide_config_flag_first(tmp_path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"training_dashboard": {"metrics_logging": {"system_metrics_interval": 30}}}')
    block = load_file(path)
    assert ProducerConfig.resolve({}, {}, block).system_interval == 30.0
    assert ProducerConfig.resolve({}, {"TRAINDASH_SYSTEM_INTERVAL": "5"}, block).system_interval == 5.0
    assert ProducerConfig.resolve({"system_interval": 0}, {}, block).system_interval == 0.0
    off = {"metrics_logging": {"system_metrics_interval": False}}
    assert ProducerConfig.resolve({}, {}, off).system_interval == 0.0


@pytest.mark.parametrize("bad", ["-1", "soon", "inf"])
def test_a_bad_interval_names_itself(bad: str) -> None:
    with pytest.raises(ConfigError, match="TRAINDASH_SYSTEM_INTERVAL.*not a valid interval"):
        ProducerConfig.resolve({}, {"TRAINDASH_SYSTEM_INTERVAL": bad}, {})

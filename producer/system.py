"""System metrics: one sample of a process, its host and the host's NVIDIA GPUs, as rows.

This module imports only the standard library, psutil and (when a sampler is made)
nvidia-ml-py, whose import name is ``pynvml``. Nothing from traindash, pyzmq or DuckDB, so
``scripts/gpu_check.py`` can load it by file path on a machine that has none of them.

A sample is a list of flat rows that share one ``ts`` (Unix seconds):

* one process/host row: ``host``, ``pid``, the process's ``cpu_percent`` (100 = one core)
  and ``rss_bytes``, and the host's ``host_cpu_percent`` (0-100 over all cores),
  ``host_mem_used_bytes``, ``host_mem_total_bytes``, ``host_mem_percent``, ``load_1m``,
  ``load_5m``, ``load_15m``, ``disk_read_bytes_per_s``, ``disk_write_bytes_per_s``,
  ``net_recv_bytes_per_s``, ``net_sent_bytes_per_s``;
* one row per GPU that NVML sees: ``host``, ``pid``, ``gpu_index``, ``gpu_uuid``,
  ``gpu_name``, ``gpu_util_percent``, ``gpu_mem_used_bytes``, ``gpu_mem_total_bytes``,
  ``gpu_power_w``, ``gpu_temp_c``, ``gpu_sm_clock_mhz`` and ``gpu_proc_mem_bytes`` (what
  the sampled process holds on that GPU).

Rates and percentages are over the time since the previous sample (the constructor takes
the first reading). A figure the platform cannot give is left out of the row, never guessed.
No NVIDIA driver, no ``pynvml``, no GPU: no GPU rows, and one debug line says why.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

log = logging.getLogger("traindash.producer.system")

# The units are in the names; tests and docs/system.md hold these lists.
PROCESS_FIELDS = ("cpu_percent", "rss_bytes")
HOST_FIELDS = (
    "host_cpu_percent",
    "host_mem_used_bytes",
    "host_mem_total_bytes",
    "host_mem_percent",
    "load_1m",
    "load_5m",
    "load_15m",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "net_recv_bytes_per_s",
    "net_sent_bytes_per_s",
)
GPU_FIELDS = (
    "gpu_util_percent",
    "gpu_mem_used_bytes",
    "gpu_mem_total_bytes",
    "gpu_power_w",
    "gpu_temp_c",
    "gpu_sm_clock_mhz",
    "gpu_proc_mem_bytes",
)
TAGS = ("host", "pid", "gpu_index", "gpu_uuid", "gpu_name")


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass
class Gpu:
    """One NVML device, its fixed tags, and the readings it has refused (not asked again)."""

    index: int
    handle: Any
    uuid: str
    name: str
    unsupported: set[str] = field(default_factory=set)


class Nvml:
    """The NVIDIA GPUs NVML sees; none when it cannot start (logged once, at debug level)."""

    def __init__(self) -> None:
        self.lib: Any = None
        self.gpus: list[Gpu] = []
        self.error = ""
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # ImportError, or NVMLError_LibraryNotFound/DriverNotLoaded/...
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("no GPU metrics (NVML did not start): %s", self.error)
            return
        self.lib = pynvml
        try:
            for i in range(pynvml.nvmlDeviceGetCount()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
                name = _text(pynvml.nvmlDeviceGetName(handle))
                self.gpus.append(Gpu(i, handle, uuid, name))
        except pynvml.NVMLError as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.debug("NVML started but listing its GPUs failed: %s", self.error)

    @property
    def available(self) -> bool:
        """True when NVML started (there may still be no GPU)."""
        return self.lib is not None

    def read(self, gpu: Gpu, pid: int) -> dict[str, Any]:
        """The figures of one GPU; any NVML call that fails leaves its field out."""
        nv, h, out = self.lib, gpu.handle, {}

        def get(name: str, fn: Any) -> None:
            if name in gpu.unsupported:
                return
            try:
                out.update(fn())
            except nv.NVMLError_NotSupported:
                gpu.unsupported.add(name)
            except nv.NVMLError as exc:  # a GPU fallen off the bus, a permission: try next time
                log.debug("GPU %d: %s failed: %s", gpu.index, name, exc)

        get("util", lambda: {"gpu_util_percent": float(nv.nvmlDeviceGetUtilizationRates(h).gpu)})

        def memory() -> dict[str, int]:
            info = nv.nvmlDeviceGetMemoryInfo(h)
            return {"gpu_mem_used_bytes": int(info.used), "gpu_mem_total_bytes": int(info.total)}

        get("memory", memory)
        get("power", lambda: {"gpu_power_w": nv.nvmlDeviceGetPowerUsage(h) / 1000.0})  # milliwatts
        get(
            "temperature",
            lambda: {"gpu_temp_c": float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))},
        )
        get("sm_clock", lambda: {"gpu_sm_clock_mhz": float(nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM))})

        def own_memory() -> dict[str, int]:
            used = 0
            for getter in (nv.nvmlDeviceGetComputeRunningProcesses, nv.nvmlDeviceGetGraphicsRunningProcesses):
                for proc in getter(h):
                    if proc.pid == pid and isinstance(proc.usedGpuMemory, int):
                        used += proc.usedGpuMemory
            return {"gpu_proc_mem_bytes": used}

        get("processes", own_memory)
        return out

    def close(self) -> None:
        if self.lib is not None:
            try:
                self.lib.nvmlShutdown()
            except self.lib.NVMLError:
                pass
            self.lib = None


def _busy(times: Any) -> tuple[float, float]:
    """(busy, total) CPU seconds of ``psutil.cpu_times()``, counted as psutil does."""
    total = sum(times)
    # guest time is already inside user time on Linux
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


class SystemSampler:
    """Samples one process (by pid), its host and every NVIDIA GPU NVML sees.

    Args:
        pid: the process to sample (this one by default): the process sender's shipper
            samples the training process, not itself.
        host: the host tag (``socket.gethostname()`` by default).
        gpus: False skips NVML altogether.
    """

    def __init__(self, pid: int | None = None, host: str | None = None, gpus: bool = True) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.host = host or socket.gethostname()
        self.nvml = Nvml() if gpus else None
        self._proc: psutil.Process | None
        try:
            self._proc = psutil.Process(self.pid)
        except psutil.Error:
            self._proc = None
        self._last: tuple[float, Any, Any, tuple[float, float]] | None = None
        self._last = self._counters()
        if self._proc is not None:
            try:
                self._proc.cpu_percent(None)  # the first reading: later calls are over an interval
            except psutil.Error:
                self._proc = None

    @property
    def gpu_count(self) -> int:
        return len(self.nvml.gpus) if self.nvml is not None else 0

    def _counters(self) -> tuple[float, Any, Any, tuple[float, float]]:
        disk = net = None
        try:
            disk = psutil.disk_io_counters()
        except (OSError, RuntimeError):
            pass
        try:
            net = psutil.net_io_counters()
        except (OSError, RuntimeError):
            pass
        return time.monotonic(), disk, net, _busy(psutil.cpu_times())

    def sample(self, ts: float | None = None) -> list[dict[str, Any]]:
        """One full sample: the process/host row, then one row per GPU."""
        ts = time.time() if ts is None else ts
        row: dict[str, Any] = {"ts": ts, "host": self.host, "pid": self.pid}
        row.update(self._process())
        row.update(self._host())
        rows = [row]
        if self.nvml is not None and self.nvml.available:
            for gpu in self.nvml.gpus:
                rows.append(
                    {
                        "ts": ts,
                        "host": self.host,
                        "pid": self.pid,
                        "gpu_index": gpu.index,
                        "gpu_uuid": gpu.uuid,
                        "gpu_name": gpu.name,
                        **self.nvml.read(gpu, self.pid),
                    }
                )
        return rows

    def _process(self) -> dict[str, Any]:
        proc = self._proc
        if proc is None:
            return {}
        try:
            with proc.oneshot():
                return {"cpu_percent": proc.cpu_percent(None), "rss_bytes": proc.memory_info().rss}
        except psutil.Error:  # the process has gone (a shipper outliving its trainer)
            self._proc = None
            return {}

    def _host(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        now, disk, net, (busy, total) = current = self._counters()
        assert self._last is not None
        then, disk0, net0, (busy0, total0) = self._last
        self._last = current
        if total > total0:
            out["host_cpu_percent"] = max(0.0, min(100.0, 100.0 * (busy - busy0) / (total - total0)))
        mem = psutil.virtual_memory()
        # used = total - available, the figure psutil's percent is computed from
        out["host_mem_used_bytes"] = int(mem.total - mem.available)
        out["host_mem_total_bytes"] = int(mem.total)
        out["host_mem_percent"] = float(mem.percent)
        try:
            out["load_1m"], out["load_5m"], out["load_15m"] = os.getloadavg()
        except (AttributeError, OSError):  # not on Windows
            pass
        dt = now - then
        if dt > 0:
            for name, a, b, attr in (
                ("disk_read_bytes_per_s", disk0, disk, "read_bytes"),
                ("disk_write_bytes_per_s", disk0, disk, "write_bytes"),
                ("net_recv_bytes_per_s", net0, net, "bytes_recv"),
                ("net_sent_bytes_per_s", net0, net, "bytes_sent"),
            ):
                if a is not None and b is not None:
                    out[name] = max(0, getattr(b, attr) - getattr(a, attr)) / dt
        return out

    def close(self) -> None:
        if self.nvml is not None:
            self.nvml.close()

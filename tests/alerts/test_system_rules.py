"""The pure system-metrics rules: GPU idle for N minutes while running, host memory high."""

from __future__ import annotations

import math

import pytest

from traindash.alerts.config import PRESETS, SYSTEM_PRESETS, Thresholds
from traindash.alerts.rules import GpuState, RuleEngine, idle_gpus, idle_since

T = Thresholds(gpu_idle_percent=5.0, gpu_idle_minutes=10.0, host_memory_percent=90.0)


def gpu(ts: float, util: float, index: int = 0, own: int = 1 << 30) -> dict:
    return {
        "seq": 1,
        "ts": ts,
        "host": "h1",
        "pid": 7,
        "gpu_index": float(index),
        "gpu_uuid": f"GPU-{index}",
        "gpu_util_percent": util,
        "gpu_proc_mem_bytes": float(own),
    }


def host(ts: float, mem: float) -> dict:
    return {"seq": 1, "ts": ts, "host": "h1", "pid": 7, "cpu_percent": 50.0, "host_mem_percent": mem}


def feed(e: RuleEngine, rows: list[dict], run: str = "r1") -> list[str]:
    out = []
    for row in rows:
        out += [a.rule for a in e.on_system(run, row, now=row["ts"])]
    return out


def test_idle_since_starts_keeps_and_ends_a_spell():
    assert idle_since(None, 2.0, 100.0, 5.0) == 100.0
    assert idle_since(100.0, 1.0, 160.0, 5.0) == 100.0
    assert idle_since(100.0, math.nan, 170.0, 5.0) == 100.0  # unreadable: no change
    assert idle_since(100.0, None, 170.0, 5.0) == 100.0
    assert idle_since(100.0, 50.0, 180.0, 5.0) is None
    assert idle_since(None, 5.0, 180.0, 5.0) is None  # at the threshold is not under it


def test_idle_gpus_are_those_the_process_uses_or_else_all():
    used, spare = GpuState(0, 1.0, True, 0.0), GpuState(1, 0.0, False, 0.0)
    assert [g.index for g in idle_gpus([used, spare], 700.0, 600.0)] == [0]
    used.idle_since = None
    assert idle_gpus([used, spare], 700.0, 600.0) == []  # a spare GPU idling is no alert
    spare.own = used.own = False
    assert [g.index for g in idle_gpus([used, spare], 700.0, 600.0)] == [1]


def test_gpu_idle_fires_after_n_minutes_once_then_recovers():
    e = RuleEngine(T)
    rows = [gpu(60.0 * i, 1.0) for i in range(0, 10)]  # nine minutes idle: not yet
    assert feed(e, rows) == []
    assert feed(e, [gpu(600.0, 0.0), gpu(660.0, 2.0), gpu(720.0, 0.0)]) == ["gpu_idle"]
    alert = e.runs["r1"].announced["gpu_idle"]
    assert alert.level == "warning" and "under 5% for 10 min" in alert.message and "GPU 0" in alert.message
    assert feed(e, [gpu(780.0, 90.0)]) == ["gpu_idle.recovered"]
    # a new spell starts from scratch
    assert feed(e, [gpu(840.0 + 60 * i, 0.0) for i in range(10)]) == []


def test_a_busy_moment_resets_the_idle_clock():
    e = RuleEngine(T)
    rows = [gpu(60.0 * i, 0.0) for i in range(8)] + [gpu(480.0, 60.0)]
    rows += [gpu(540.0 + 60 * i, 0.0) for i in range(9)]  # 8 more idle minutes
    assert feed(e, rows) == []


def test_gpu_idle_only_while_the_run_is_running():
    e = RuleEngine(T)
    e.on_status("r1", "stalled", now=0.0)  # raises trainer_stalled, another rule
    assert feed(e, [gpu(60.0 * i, 0.0) for i in range(15)]) == []
    e.on_status("r1", "running", now=900.0)
    assert feed(e, [gpu(900.0 + 60 * i, 0.0) for i in range(11)]) == ["gpu_idle"]
    e2 = RuleEngine(T)
    e2.on_end("r2", {"status": "finished"}, now=0.0)
    assert feed(e2, [gpu(60.0 * i, 0.0) for i in range(15)], run="r2") == []


def test_one_gpu_idle_among_used_gpus_alerts_and_names_it():
    e = RuleEngine(T)
    rows = []
    for i in range(12):
        rows += [gpu(60.0 * i, 95.0, index=0), gpu(60.0 * i, 0.0, index=1)]
    assert feed(e, rows) == ["gpu_idle"]
    message = e.runs["r1"].announced["gpu_idle"].message
    assert "GPU 1 at 0%" in message and "GPU 0" not in message


def test_host_memory_above_the_threshold_then_back():
    e = RuleEngine(T)
    assert feed(e, [host(0.0, 80.0), host(10.0, 91.5), host(20.0, 97.0)]) == ["host_memory_high"]
    alert = e.runs["r1"].announced["host_memory_high"]
    assert alert.message == "Memory of host h1 is 91.5% used, above 90%, for run r1"
    assert alert.data == {"host": "h1", "host_mem_percent": 91.5}
    assert feed(e, [host(30.0, 60.0)]) == ["host_memory_high.recovered"]


def test_zero_turns_a_system_rule_off():
    e = RuleEngine(Thresholds(gpu_idle_minutes=0.0, host_memory_percent=0.0))
    assert feed(e, [host(0.0, 99.9)] + [gpu(60.0 * i, 0.0) for i in range(30)]) == []


@pytest.mark.parametrize(
    "preset,idle,minutes,mem",
    [("conservative", 10.0, 5.0, 90.0), ("MODERATE", 5.0, 10.0, 95.0), ("aggressive", 2.0, 20.0, 98.0)],
)
def test_presets_bring_the_system_thresholds(preset: str, idle: float, minutes: float, mem: float):
    t = Thresholds.from_value(preset)
    assert (t.gpu_idle_percent, t.gpu_idle_minutes, t.host_memory_percent) == (idle, minutes, mem)
    # the guide's own numbers are untouched
    assert t.no_improvement_episodes == PRESETS[preset.lower()]["no_improvement_episodes"]
    assert set(PRESETS[preset.lower()]) == {
        "no_improvement_episodes",
        "critical_loss_threshold",
        "min_profit_warning",
    }
    assert set(SYSTEM_PRESETS[preset.lower()]) == {
        "gpu_idle_percent",
        "gpu_idle_minutes",
        "host_memory_percent",
    }


def test_thresholds_dict_configures_the_system_rules():
    t = Thresholds.from_value({"gpu_idle_percent": 20, "gpu_idle_minutes": 2, "host_memory_percent": 80})
    assert (t.gpu_idle_percent, t.gpu_idle_minutes, t.host_memory_percent) == (20.0, 2.0, 80.0)
    assert t.critical_loss_threshold == 1000.0
    guide = Thresholds.from_value(dict(PRESETS["aggressive"]))  # the guide's dict: system defaults
    assert (guide.gpu_idle_percent, guide.gpu_idle_minutes, guide.host_memory_percent) == (5.0, 10.0, 95.0)

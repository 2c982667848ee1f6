"""Pure alert rules: given rows, a run's state and the time, decide which alerts to raise.

No I/O here. :class:`RuleEngine` keeps per-run state for the alerts service; the guide's
in-process ``check_training_health`` uses :func:`health_alerts`. Rule names (the ``rule``
column of the ``alerts`` table): ``no_improvement``, ``loss_critical``, ``profit_low``,
``nan_metric``, ``training_complete``, ``training_crashed``, ``new_best``,
``trainer_stalled``, ``trainer_lost``, ``trainer_recovered``, ``gpu_idle``,
``host_memory_high``, ``custom:<name>``, and ``<rule>.recovered`` when a condition clears.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from traindash.alerts.config import CustomRuleSpec, Thresholds
from traindash.alerts.expr import Condition, parse
from traindash.reports import ENDED_STATUSES, TRAINER_ROLE

# Objectives where lower is better (as in the producer's statistics).
LOWER_IS_BETTER = frozenset({"drawdown", "loss"})

INFO, WARNING, CRITICAL = "info", "warning", "critical"
LEVELS = (INFO, WARNING, CRITICAL)
_SKIP = frozenset({"seq", "ts", "run_id", "episode", "step", "num_trades", "extra"})


@dataclass(frozen=True)
class Alert:
    """One alert: what the channels send and what lands in the ``alerts`` table."""

    level: str
    rule: str
    title: str
    message: str
    run_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    ts: float = 0.0
    # Set by the alerts service: (run, rule, the row that fired it) as text, and that row's seq.
    key: str | None = None
    row_seq: int | None = None


class Throttle:
    """A cooldown per key (usually ``(run_id, rule)``): one alert per key per ``cooldown`` s."""

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._last: dict[Any, float] = {}

    def allow(self, key: Any, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.cooldown:
            return False
        self._last[key] = now
        return True

    def mark(self, key: Any, now: float) -> None:
        """Start the cooldown of ``key`` now (a forced alert)."""
        self._last[key] = now

    def forget(self, predicate: Any) -> None:
        for key in [k for k in self._last if predicate(k)]:
            del self._last[key]


def nonfinite(row: Mapping[str, Any]) -> list[str]:
    """Names of the numeric metrics in ``row`` that are NaN or ±Inf."""
    bad = []
    for name, value in row.items():
        if name in _SKIP or isinstance(value, bool):
            continue
        values = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            bad.append(name)
    return bad


def _num(row: Mapping[str, Any], key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _fmt(value: Any) -> str:
    return f"{value:,.4g}" if isinstance(value, float) else str(value)


def _label(run_id: str | None, name: str | None) -> str:
    if not run_id:
        return "training"
    return f"run {name} ({run_id})" if name and name != run_id else f"run {run_id}"


# -- the guide's conditions, as (rule, level, title, message) -------------------------------
def nan_alert(bad: Iterable[str], where: str) -> tuple[str, str, str, str]:
    names = ", ".join(sorted(bad))
    return "nan_metric", CRITICAL, "NaN/Inf detected", f"Non-finite values in {names} for {where}"


def loss_alert(loss: float, limit: float, where: str) -> tuple[str, str, str, str]:
    return (
        "loss_critical",
        CRITICAL,
        "Critical loss",
        f"Loss {_fmt(loss)} is above the critical threshold {_fmt(limit)} for {where}",
    )


def profit_alert(profit: float, limit: float, where: str) -> tuple[str, str, str, str]:
    return (
        "profit_low",
        WARNING,
        "Low profit",
        f"Profit {_fmt(profit)} is below the warning threshold {_fmt(limit)} for {where}",
    )


def stale_alert(
    episodes: int, best: float, where: str, objective: str = "profit"
) -> tuple[str, str, str, str]:
    return (
        "no_improvement",
        WARNING,
        "Slow Learning",
        f"No improvement in {episodes} episodes for {where} "
        f"(best {objective.replace('_', ' ')} {_fmt(best)})",
    )


# -- the system-metrics conditions (issue 16) ---------------------------------------------------
@dataclass
class GpuState:
    """What the GPU idle rule remembers about one GPU of a run."""

    index: int
    util: float | None = None
    own: bool = False  # the run's process holds memory on it
    idle_since: float | None = None  # start of the current spell under the threshold


def idle_since(since: float | None, util: float | None, ts: float, threshold: float) -> float | None:
    """When a GPU's spell of utilisation under ``threshold`` began (None while it is busy).

    A sample NVML could not read neither starts nor ends a spell.
    """
    if util is None or not math.isfinite(util):
        return since
    if util < threshold:
        return ts if since is None else since
    return None


def idle_gpus(gpus: Iterable[GpuState], ts: float, seconds: float) -> list[GpuState]:
    """The run's GPUs idle for at least ``seconds``: those its process uses, or, when it
    holds memory on none (or NVML cannot tell), every GPU of its host."""
    gpus = list(gpus)
    used = [g for g in gpus if g.own] or gpus
    return [g for g in used if g.idle_since is not None and ts - g.idle_since >= seconds]


def gpu_idle_alert(
    idle: Iterable[GpuState], threshold: float, minutes: float, where: str
) -> tuple[str, str, str, str]:
    shown = ", ".join(f"GPU {g.index} at {_fmt(g.util)}%" for g in idle)
    return (
        "gpu_idle",
        WARNING,
        "GPU idle",
        f"GPU utilisation under {_fmt(threshold)}% for {_fmt(minutes)} min for {where} ({shown})",
    )


def host_memory_alert(percent: float, limit: float, host: str, where: str) -> tuple[str, str, str, str]:
    return (
        "host_memory_high",
        WARNING,
        "Host memory high",
        f"Memory of host {host} is {_fmt(percent)}% used, above {_fmt(limit)}%, for {where}",
    )


def health_alerts(
    latest: Mapping[str, Any],
    history: list[Mapping[str, Any]],
    thresholds: Thresholds,
    run_id: str | None = None,
    now: float = 0.0,
) -> list[Alert]:
    """The guide's ``check_training_health`` conditions on one episode and its recent history."""
    where = _label(run_id, None)
    data = {k: v for k, v in latest.items() if isinstance(v, (int, float, str))}
    found: list[tuple[str, str, str, str]] = []
    bad = nonfinite(latest)
    if bad:
        found.append(nan_alert(bad, where))
    loss = _num(latest, "loss")
    if loss is not None and math.isfinite(loss) and loss > thresholds.critical_loss_threshold:
        found.append(loss_alert(loss, thresholds.critical_loss_threshold, where))
    profit = _num(latest, "profit")
    if profit is not None and profit < thresholds.min_profit_warning:
        found.append(profit_alert(profit, thresholds.min_profit_warning, where))
    n = thresholds.no_improvement_episodes
    profits = [p for p in (_num(e, "profit") for e in history) if p is not None and math.isfinite(p)]
    if n > 0 and len(profits) > n:
        before, window = max(profits[:-n]), max(profits[-n:])
        if window <= before:
            found.append(stale_alert(n, before, where))
    return [Alert(level, rule, title, msg, run_id, dict(data), now) for rule, level, title, msg in found]


@dataclass
class RunState:
    """What the rules remember about one run."""

    name: str | None = None
    role: str = TRAINER_ROLE
    objective: str = "profit"
    episodes: int = 0
    # The best value of the run's objective so far (profit unless the run names another),
    # in "higher is better" terms: negated for an objective where lower is better.
    best_profit: float = -math.inf
    best_at: int = 0
    latest: dict[str, Any] = field(default_factory=dict)
    nonfinite: dict[str, list[str]] = field(default_factory=dict)
    loss: float | None = None
    status: str = "running"
    announced: dict[str, Alert] = field(default_factory=dict)
    streaks: dict[str, int] = field(default_factory=dict)
    ended: bool = False
    gpus: dict[str, GpuState] = field(default_factory=dict)


@dataclass(frozen=True)
class CustomRule:
    """A parsed custom rule."""

    spec: CustomRuleSpec
    condition: Condition

    @classmethod
    def build(cls, spec: CustomRuleSpec) -> CustomRule:
        return cls(spec, parse(spec.condition))


class RuleEngine:
    """Per-run state and every rule of the alerts service. Feed rows, get alerts back.

    A condition alerts when it starts to hold (at most once per cooldown per run and rule)
    and raises a ``<rule>.recovered`` info alert when it clears; events (new best, end of
    training) alert once per cooldown.
    """

    def __init__(
        self,
        thresholds: Thresholds,
        cooldown: float = 300.0,
        rules: Iterable[CustomRuleSpec] = (),
        new_best_min_episodes: int = 10,
    ) -> None:
        self.thresholds = thresholds
        self.throttle = Throttle(cooldown)
        self.custom = [CustomRule.build(s) for s in rules]
        self.new_best_min_episodes = new_best_min_episodes
        self.runs: dict[str, RunState] = {}

    def state(self, run_id: str) -> RunState:
        st = self.runs.get(run_id)
        if st is None:
            st = self.runs[run_id] = RunState()
        return st

    def ignored(self, run_id: str) -> bool:
        st = self.runs.get(run_id)
        return st is not None and (st.role != TRAINER_ROLE or st.ended)

    # -- inputs ----------------------------------------------------------------------------
    def on_run(self, run_id: str, row: Mapping[str, Any], now: float) -> list[Alert]:
        st = self.state(run_id)
        st.name = row.get("name") or st.name
        st.role = row.get("role") or TRAINER_ROLE
        st.objective = str(row.get("objective") or "profit")
        st.ended = False
        return []

    def on_episode(self, run_id: str, row: Mapping[str, Any], now: float) -> list[Alert]:
        if self.ignored(run_id):
            return []
        st = self.state(run_id)
        out: list[Alert] = []
        where = _label(run_id, st.name)
        st.episodes += 1
        st.latest.update(row)
        objective = st.objective
        data = {"episode": row.get("episode"), objective: row.get(objective)}
        st.nonfinite["episode"] = nonfinite(row)
        self._nan(run_id, st, now, out)
        sign = -1.0 if objective in LOWER_IS_BETTER else 1.0
        value = _num(row, objective)
        if value is not None and math.isfinite(value) and sign * value > st.best_profit:
            if st.episodes > self.new_best_min_episodes and st.best_profit > -math.inf:
                self._event(
                    run_id,
                    st,
                    now,
                    out,
                    "new_best",
                    INFO,
                    "New best model",
                    f"New best {objective.replace('_', ' ')} {_fmt(value)} (was "
                    f"{_fmt(sign * st.best_profit)}) at episode {row.get('episode')} for {where}",
                    data,
                )
            st.best_profit, st.best_at = sign * value, st.episodes
        profit = _num(row, "profit")
        if profit is not None and math.isfinite(profit):
            limit = self.thresholds.min_profit_warning
            self._condition(run_id, st, now, out, profit < limit, profit_alert(profit, limit, where), data)
        n = self.thresholds.no_improvement_episodes
        if n > 0 and st.best_profit > -math.inf:
            stale = st.episodes - st.best_at >= n
            self._condition(
                run_id,
                st,
                now,
                out,
                stale,
                stale_alert(n, sign * st.best_profit, where, objective),
                {**data, f"best_{objective}": sign * st.best_profit},
            )
        if "loss" in row:
            self._loss(run_id, st, now, out, row)
        for rule in self.custom:
            self._custom(run_id, st, now, out, rule, where, data)
        return out

    def on_model(self, run_id: str, row: Mapping[str, Any], now: float) -> list[Alert]:
        if self.ignored(run_id):
            return []
        st = self.state(run_id)
        out: list[Alert] = []
        st.latest.update({k: v for k, v in row.items() if k not in ("episode", "seq", "ts")})
        st.nonfinite["model"] = nonfinite(row)
        self._nan(run_id, st, now, out)
        self._loss(run_id, st, now, out, row)
        return out

    def on_system(self, run_id: str, row: Mapping[str, Any], now: float) -> list[Alert]:
        """A ``system`` row: the host memory rule (process/host rows) or GPU idle (GPU rows).

        Both hold only while the run is running; time is the sample's ``ts``.
        """
        st = self.state(run_id)
        if self.ignored(run_id) or st.status != "running":
            return []
        out: list[Alert] = []
        t = self.thresholds
        where = _label(run_id, st.name)
        ts = _num(row, "ts")
        ts = now if ts is None else ts
        index = _num(row, "gpu_index")
        if index is None:
            percent = _num(row, "host_mem_percent")
            if percent is not None and t.host_memory_percent > 0:
                host = str(row.get("host") or "?")
                self._condition(
                    run_id,
                    st,
                    now,
                    out,
                    percent > t.host_memory_percent,
                    host_memory_alert(percent, t.host_memory_percent, host, where),
                    {"host": host, "host_mem_percent": percent},
                )
            return out
        if t.gpu_idle_minutes <= 0 or t.gpu_idle_percent <= 0:
            return out
        key = str(row.get("gpu_uuid") or int(index))
        gpu = st.gpus.setdefault(key, GpuState(int(index)))
        gpu.util = _num(row, "gpu_util_percent")
        gpu.own = (_num(row, "gpu_proc_mem_bytes") or 0) > 0
        gpu.idle_since = idle_since(gpu.idle_since, gpu.util, ts, t.gpu_idle_percent)
        idle = idle_gpus(st.gpus.values(), ts, t.gpu_idle_minutes * 60)
        self._condition(
            run_id,
            st,
            now,
            out,
            bool(idle),
            gpu_idle_alert(idle, t.gpu_idle_percent, t.gpu_idle_minutes, where),
            {"gpus": [{"index": g.index, "util": g.util} for g in idle]},
        )
        return out

    def on_end(self, run_id: str, row: Mapping[str, Any], now: float) -> list[Alert]:
        if self.ignored(run_id):
            return []
        st = self.state(run_id)
        status = str(row.get("status") or "finished")
        raw = row.get("final_metrics")
        final: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        out: list[Alert] = []
        st.ended, st.status = True, status
        where = _label(run_id, st.name)
        data = {"status": status, **final}
        if status == "finished":
            parts = [
                f"{k.replace('_', ' ')} {_fmt(final[k])}"
                for k in ("total_episodes", "best_profit", "best_sharpe")
                if k in final
            ]
            if isinstance(final.get("training_time"), (int, float)):
                parts.append(f"training time {final['training_time']:.1f} s")
            self._event(
                run_id,
                st,
                now,
                out,
                "training_complete",
                INFO,
                "Training complete",
                f"Training complete for {where}" + (": " + ", ".join(parts) if parts else ""),
                data,
            )
        else:
            self._event(
                run_id,
                st,
                now,
                out,
                "training_crashed",
                CRITICAL,
                "Training crashed",
                f"Training ended with status {status!r} for {where}",
                data,
            )
        st.announced.clear()
        return out

    def on_status(
        self, run_id: str, status: str, now: float, role: str | None = None, name: str | None = None
    ) -> list[Alert]:
        """The run's liveness from ``runs.status``: running, stalled, lost, finished, crashed."""
        st = self.state(run_id)
        if role:
            st.role = role
        if name and not st.name:
            st.name = name
        previous, st.status = st.status, status
        if st.role != TRAINER_ROLE or status == previous:
            return []
        if status in ENDED_STATUSES:
            st.ended = True
            st.announced.pop("trainer_stalled", None)
            st.announced.pop("trainer_lost", None)
            return []
        out: list[Alert] = []
        where = _label(run_id, st.name)
        data = {"status": status, "previous": previous}
        if status == "stalled" and "trainer_stalled" not in st.announced:
            self._raise(
                run_id,
                st,
                now,
                out,
                "trainer_stalled",
                WARNING,
                "Trainer stalled",
                f"No heartbeat from {where}; its trainer looks stalled",
                data,
            )
        elif status == "lost" and "trainer_lost" not in st.announced:
            self._raise(
                run_id,
                st,
                now,
                out,
                "trainer_lost",
                CRITICAL,
                "Trainer lost",
                f"No heartbeat from {where} for a long time; its trainer looks lost",
                data,
            )
        elif status == "running":
            st.ended = False
            was = [st.announced.pop(r, None) for r in ("trainer_lost", "trainer_stalled")]
            if any(was):
                out.append(
                    Alert(
                        INFO,
                        "trainer_recovered",
                        "Trainer recovered",
                        f"{where[0].upper()}{where[1:]} is sending again",
                        run_id,
                        data,
                        now,
                    )
                )
        return out

    def forget(self, run_id: str) -> None:
        self.runs.pop(run_id, None)
        self.throttle.forget(lambda key: key[0] == run_id)

    # -- helpers -----------------------------------------------------------------------------
    def _nan(self, run_id: str, st: RunState, now: float, out: list[Alert]) -> None:
        bad = sorted({n for names in st.nonfinite.values() for n in names})
        where = _label(run_id, st.name)
        self._condition(run_id, st, now, out, bool(bad), nan_alert(bad, where), {"metrics": bad})

    def _loss(self, run_id: str, st: RunState, now: float, out: list[Alert], row: Mapping[str, Any]) -> None:
        loss = _num(row, "loss")
        if loss is None or not math.isfinite(loss):
            return  # NaN/Inf are the nan_metric rule's; they neither raise nor clear this one
        limit = self.thresholds.critical_loss_threshold
        self._condition(
            run_id,
            st,
            now,
            out,
            loss > limit,
            loss_alert(loss, limit, _label(run_id, st.name)),
            {"loss": loss, "step": row.get("step"), "episode": row.get("episode")},
        )

    def _custom(
        self,
        run_id: str,
        st: RunState,
        now: float,
        out: list[Alert],
        rule: CustomRule,
        where: str,
        data: dict[str, Any],
    ) -> None:
        spec = rule.spec
        holds = rule.condition.evaluate(st.latest)
        streak = st.streaks[spec.name] = st.streaks.get(spec.name, 0) + 1 if holds else 0
        values = {n: st.latest.get(n) for n in sorted(rule.condition.names)}
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in values.items())
        span = f" for {spec.for_episodes} episodes" if spec.for_episodes > 1 else ""
        message = spec.message or f"{spec.condition}{span} for {where} ({shown})"
        self._condition(
            run_id,
            st,
            now,
            out,
            streak >= spec.for_episodes,
            (f"custom:{spec.name}", spec.level, spec.title, message),
            {**data, **values, "condition": spec.condition},
        )

    def _condition(
        self,
        run_id: str,
        st: RunState,
        now: float,
        out: list[Alert],
        holds: bool,
        what: tuple[str, str, str, str],
        data: dict[str, Any],
    ) -> None:
        rule, level, title, message = what
        if holds:
            if rule not in st.announced:
                self._raise(run_id, st, now, out, rule, level, title, message, data)
        elif rule in st.announced:
            first = st.announced.pop(rule)
            out.append(
                Alert(
                    INFO,
                    f"{rule}.recovered",
                    f"Recovered: {first.title}",
                    f"Cleared for {_label(run_id, st.name)}: {first.message}",
                    run_id,
                    data,
                    now,
                )
            )

    def _raise(
        self,
        run_id: str,
        st: RunState,
        now: float,
        out: list[Alert],
        rule: str,
        level: str,
        title: str,
        message: str,
        data: dict[str, Any],
    ) -> None:
        alert = self._event(run_id, st, now, out, rule, level, title, message, data)
        if alert is not None:
            st.announced[rule] = alert

    def _event(
        self,
        run_id: str,
        st: RunState,
        now: float,
        out: list[Alert],
        rule: str,
        level: str,
        title: str,
        message: str,
        data: dict[str, Any],
    ) -> Alert | None:
        """Append the alert unless the throttle holds it back; the alert, or None."""
        if not self.throttle.allow((run_id, rule), now):
            return None
        alert = Alert(level, rule, title, message, run_id, data, now)
        out.append(alert)
        return alert

"""The guide's AlertSystem: send alerts from training code to Slack and email.

Every call returns at once: delivery runs on worker threads, failures are retried and
logged, and nothing raises into the training loop. When a collector answers, each alert
is also recorded in the ``alerts`` table (with the channels it reached).
"""

from __future__ import annotations

import atexit
import logging
import re
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

from traindash.alerts.channels import Channel, Dispatcher, EmailChannel, SlackChannel
from traindash.alerts.config import LEVELS, PRESETS, AlertsConfig
from traindash.alerts.record import AlertRecorder
from traindash.alerts.rules import Alert, Throttle, health_alerts

log = logging.getLogger("traindash.alerts")

_open: weakref.WeakSet[AlertSystem] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for system in list(_open):
        system.close(timeout=5.0)


class AlertThresholds:
    """The guide's presets: CONSERVATIVE (more alerts), MODERATE (balanced), AGGRESSIVE (fewer)."""

    CONSERVATIVE: dict[str, Any] = dict(PRESETS["conservative"])
    MODERATE: dict[str, Any] = dict(PRESETS["moderate"])
    AGGRESSIVE: dict[str, Any] = dict(PRESETS["aggressive"])


def build_channels(cfg: AlertsConfig) -> list[Channel]:
    """The enabled, usable channels of a config (a misconfigured one is skipped with a warning)."""
    channels: list[Channel] = []
    if cfg.slack.enabled:
        try:
            channels.append(SlackChannel(cfg.slack, cfg.dashboard_url, cfg.slack_retries))
        except ValueError as exc:
            log.warning("alerts: slack disabled: %s", exc)
    if cfg.email.enabled:
        try:
            channels.append(EmailChannel(cfg.email, cfg.dashboard_url))
        except ValueError as exc:
            log.warning("alerts: email disabled: %s", exc)
    return channels


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_") or "alert"


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s"


class AlertSystem:
    """Multi-channel alert notifications (email over SMTP, Slack webhooks) with throttling.

    Args:
        config: the guide's dict: ``enable_alerts``, ``email{enabled, smtp_host, smtp_port,
            username, password, to_addrs}``, ``slack{enabled, webhook_url}``, ``thresholds``
            (a dict such as ``AlertThresholds.MODERATE``), and optionally ``cooldown_seconds``,
            ``run_id`` (the run the alerts are about), ``dashboard_url``.
    """

    def __init__(
        self, config: Mapping[str, Any] | None = None, *, settings: AlertsConfig | None = None
    ) -> None:
        self.settings = settings or AlertsConfig.from_mapping(config or {})
        cfg = self.settings
        self.enabled = cfg.enabled
        self.thresholds: dict[str, Any] = {
            "no_improvement_episodes": cfg.thresholds.no_improvement_episodes,
            "critical_loss_threshold": cfg.thresholds.critical_loss_threshold,
            "min_profit_warning": cfg.thresholds.min_profit_warning,
        }
        self.alert_history: deque[dict[str, Any]] = deque(maxlen=1000)
        self._throttle = Throttle(cfg.cooldown_seconds)
        self._lock = threading.Lock()
        self._closed = False
        self.channels = build_channels(cfg) if cfg.enabled else []
        self._recorder = AlertRecorder(cfg.endpoints, cfg.output_dir) if cfg.enabled and cfg.record else None
        self._dispatcher = Dispatcher(
            self.channels,
            self._delivered,
            storm_threshold=cfg.storm_threshold,
            batch_window=cfg.batch_window,
            max_attempts=cfg.max_attempts,
            retry_backoff=cfg.retry_backoff,
        )
        _open.add(self)

    # -- the guide's API -------------------------------------------------------------------------
    def send_alert(
        self, level: str, title: str, message: str, data: dict[str, Any] | None = None, force: bool = False
    ) -> bool:
        """Queue an alert for every enabled channel.

        Returns True when the alert was accepted for delivery, False when alerts are
        disabled or the same alert (same title/rule) was sent within the cooldown and
        ``force`` is not set. Delivery itself happens in the background; see ``flush``.
        """
        try:
            if not self.enabled or self._closed:
                return False
            level = str(level).lower()
            if level not in LEVELS:
                log.warning("alerts: unknown level %r, sending as 'warning'", level)
                level = "warning"
            data = dict(data or {})
            rule = str(data.pop("rule", None) or _slug(title))
            run_id = data.pop("run_id", None) or self.settings.run_id
            return self._send(Alert(level, rule, str(title), str(message), run_id, data, time.time()), force)
        except Exception:  # never raise into training code
            log.exception("alerts: send_alert failed")
            return False

    def check_training_health(
        self, latest_episode: dict[str, Any], recent_history: list[dict[str, Any]]
    ) -> None:
        """Alert on NaN/Inf, loss above the critical threshold, profit below the warning
        threshold, and no improvement for ``no_improvement_episodes`` episodes."""
        try:
            if not self.enabled or not latest_episode:
                return
            for alert in health_alerts(
                latest_episode,
                list(recent_history or []),
                self.settings.thresholds,
                self.settings.run_id,
                time.time(),
            ):
                self._send(alert, False)
        except Exception:
            log.exception("alerts: check_training_health failed")

    def send_training_complete(
        self,
        total_episodes: int = 0,
        best_profit: float = 0.0,
        best_sharpe: float = 0.0,
        training_time: float = 0.0,
        **extra: Any,
    ) -> None:
        """An info alert summarising a finished training run."""
        message = (
            f"Training finished after {total_episodes} episodes in {_duration(training_time)}: "
            f"best profit {best_profit:,.2f}, best Sharpe {best_sharpe:.3f}"
        )
        data = {
            "total_episodes": total_episodes,
            "best_profit": best_profit,
            "best_sharpe": best_sharpe,
            "training_time": training_time,
            **extra,
            "rule": "training_complete",
        }
        self.send_alert("info", "Training Complete", message, data, force=True)

    def send_new_best_model(
        self,
        episode: int | None = None,
        profit: float | None = None,
        sharpe: float | None = None,
        model_path: str | None = None,
        **extra: Any,
    ) -> None:
        """An info alert for a new best model (throttled like any other alert)."""
        parts = [
            f"episode {episode}" if episode is not None else None,
            f"profit {profit:,.2f}" if isinstance(profit, (int, float)) else None,
            f"Sharpe {sharpe:.3f}" if isinstance(sharpe, (int, float)) else None,
            f"saved to {model_path}" if model_path else None,
        ]
        text = ", ".join(p for p in parts if p)
        message = text[:1].upper() + text[1:] if text else "A new best model was found"
        data = {
            "episode": episode,
            "profit": profit,
            "sharpe": sharpe,
            "model_path": model_path,
            **extra,
            "rule": "new_best",
        }
        self.send_alert("info", "New Best Model", message, {k: v for k, v in data.items() if v is not None})

    # -- lifecycle ---------------------------------------------------------------------------------
    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until queued alerts are delivered (or given up) and recorded."""
        deadline = time.monotonic() + timeout
        done = self._dispatcher.flush(timeout)
        if self._recorder is not None:
            done = self._recorder.flush(max(0.0, deadline - time.monotonic())) and done
        return done

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (bounded), record it, stop the workers."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open.discard(self)
        self._dispatcher.close(timeout)
        if self._recorder is not None:
            self._recorder.close()

    def __enter__(self) -> AlertSystem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        names = ",".join(c.name for c in self.channels) or "none"
        return f"AlertSystem(enabled={self.enabled}, channels={names})"

    # -- internals -----------------------------------------------------------------------------------
    def _send(self, alert: Alert, force: bool) -> bool:
        key = (alert.run_id, alert.rule)
        with self._lock:
            allowed = self._throttle.allow(key, alert.ts) or force
            if force:
                self._throttle.mark(key, alert.ts)
        if not allowed:
            log.debug("alerts: %s throttled", alert.rule)
            return False
        self._dispatcher.submit(alert)
        return True

    def _delivered(self, alert: Alert, reached: list[str], errors: dict[str, str]) -> None:
        self.alert_history.append(
            {
                "ts": alert.ts,
                "level": alert.level,
                "rule": alert.rule,
                "title": alert.title,
                "message": alert.message,
                "run_id": alert.run_id,
                "data": alert.data,
                "channels": reached,
                "errors": errors,
            }
        )
        if self._recorder is not None:
            self._recorder.record(alert, reached, errors)

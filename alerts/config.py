"""AlertsConfig: the alerts settings, built once from the guide's config dict and the environment.

The guide's dict (``AlertSystem(config)``) and the ``alerts`` block of neural_config.json have
the same shape: ``enable_alerts`` (or ``enabled``), ``email{...}``, ``slack{...}``,
``thresholds`` (a dict, or a preset name ``"moderate"``), plus traindash's own keys
(``cooldown_seconds``, ``rules``, ...; see docs/alerts.md). Secrets come from the environment
first (``TRAINDASH_SMTP_PASSWORD``, ``TRAINDASH_SLACK_WEBHOOK_URL``, ``TRAINDASH_SLACK_TOKEN``,
or the variables a config names with ``password_env`` / ``webhook_url_env`` / ``token_env``),
then from the dict itself. Secret fields never appear in a ``repr``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traindash import config as tdconfig
from traindash.config import ConfigError, Endpoints, Resolver

LEVELS = ("info", "warning", "critical")

PRESETS: dict[str, dict[str, float]] = {
    "conservative": {
        "no_improvement_episodes": 50,
        "critical_loss_threshold": 500.0,
        "min_profit_warning": -200.0,
    },
    "moderate": {
        "no_improvement_episodes": 100,
        "critical_loss_threshold": 1000.0,
        "min_profit_warning": -500.0,
    },
    "aggressive": {
        "no_improvement_episodes": 200,
        "critical_loss_threshold": 2000.0,
        "min_profit_warning": -1000.0,
    },
}
# The system-metrics rules' thresholds of each preset (issue 16). Kept apart so the guide's
# AlertThresholds dicts stay exactly what the guide prints; a preset name brings both.
SYSTEM_PRESETS: dict[str, dict[str, float]] = {
    "conservative": {"gpu_idle_percent": 10.0, "gpu_idle_minutes": 5.0, "host_memory_percent": 90.0},
    "moderate": {"gpu_idle_percent": 5.0, "gpu_idle_minutes": 10.0, "host_memory_percent": 95.0},
    "aggressive": {"gpu_idle_percent": 2.0, "gpu_idle_minutes": 20.0, "host_memory_percent": 98.0},
}


@dataclass(frozen=True)
class Thresholds:
    """The guide's three thresholds and the system rules' (MODERATE by default).

    ``gpu_idle``: a running run's GPU under ``gpu_idle_percent`` utilisation for
    ``gpu_idle_minutes``; ``host_memory_high``: its host's memory above
    ``host_memory_percent``. A value of 0 (or less) turns that rule off.
    """

    no_improvement_episodes: int = 100
    critical_loss_threshold: float = 1000.0
    min_profit_warning: float = -500.0
    gpu_idle_percent: float = 5.0
    gpu_idle_minutes: float = 10.0
    host_memory_percent: float = 95.0

    @classmethod
    def from_value(cls, value: Any) -> Thresholds:
        if value is None:
            return cls()
        if isinstance(value, str):
            if value.lower() not in PRESETS:
                raise ConfigError(f"alerts thresholds preset {value!r} is not one of {', '.join(PRESETS)}")
            value = {**SYSTEM_PRESETS[value.lower()], **PRESETS[value.lower()]}
        if not isinstance(value, Mapping):
            raise ConfigError("alerts 'thresholds' must be an object or a preset name")
        base = cls()
        try:
            return cls(
                no_improvement_episodes=int(
                    value.get("no_improvement_episodes", base.no_improvement_episodes)
                ),
                critical_loss_threshold=float(
                    value.get("critical_loss_threshold", base.critical_loss_threshold)
                ),
                min_profit_warning=float(value.get("min_profit_warning", base.min_profit_warning)),
                gpu_idle_percent=float(value.get("gpu_idle_percent", base.gpu_idle_percent)),
                gpu_idle_minutes=float(value.get("gpu_idle_minutes", base.gpu_idle_minutes)),
                host_memory_percent=float(value.get("host_memory_percent", base.host_memory_percent)),
            )
        except (TypeError, ValueError):
            raise ConfigError(f"alerts 'thresholds' has a non-numeric value: {dict(value)!r}") from None


@dataclass(frozen=True)
class EmailConfig:
    """SMTP delivery. ``password`` is a secret: from the environment, never in a repr."""

    enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = 587
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    from_addr: str = "traindash@localhost"
    to_addrs: tuple[str, ...] = ()
    starttls: str = "auto"  # "auto" (when offered), "always", "never"
    use_ssl: bool = False
    timeout: float = 10.0
    ca_file: str | None = None  # trust this CA for TLS (a private relay); system CAs otherwise


@dataclass(frozen=True)
class SlackConfig:
    """Slack delivery by incoming webhook, or bot token + channel. Secrets never in a repr."""

    enabled: bool = False
    webhook_url: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    channel: str | None = None
    timeout: float = 10.0
    base_url: str | None = None  # Web API base URL (tests point it at loopback)

    @property
    def configured(self) -> bool:
        return bool(self.webhook_url or (self.token and self.channel))


@dataclass(frozen=True)
class CustomRuleSpec:
    """A user rule: ``condition`` over a run's metrics, optionally true ``for_episodes`` in a row."""

    name: str
    condition: str
    level: str = "warning"
    title: str = ""
    for_episodes: int = 1
    message: str = ""


@dataclass(frozen=True)
class AlertsConfig:
    """Everything the alerts rules, channels and service need; built once."""

    enabled: bool = True
    email: EmailConfig = field(default_factory=EmailConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    thresholds: Thresholds = field(default_factory=Thresholds)
    rules: tuple[CustomRuleSpec, ...] = ()
    cooldown_seconds: float = 300.0
    storm_threshold: int = 5
    batch_window: float = 0.5
    max_attempts: int = 4
    retry_backoff: float = 0.5
    slack_retries: int = 2
    new_best_min_episodes: int = 10
    status_poll_interval: float = 1.0
    dashboard_url: str = "http://127.0.0.1:8050"
    run_id: str | None = None
    record: bool = True
    # The alerts process's name for its watermarks (alert_marks.consumer), and whether a
    # consumer with none evaluates every stored row rather than starting from now.
    consumer: str = "traindash.alerts"
    from_start: bool = False
    endpoints: Endpoints = field(default_factory=Endpoints)
    output_dir: Path = Path("training_logs")

    @classmethod
    def from_mapping(
        cls,
        block: Mapping[str, Any] | None,
        env: Mapping[str, str] | None = None,
        *,
        endpoints: Endpoints | None = None,
        dashboard_url: str | None = None,
        output_dir: Path | None = None,
    ) -> AlertsConfig:
        """From the guide's alerts dict; secrets from ``env`` (the process environment by default)."""
        block = dict(block or {})
        env = tdconfig.environ() if env is None else env
        enabled = block.get("enable_alerts", block.get("enabled", True))
        defaults = cls()
        rules = tuple(_rule(i, r) for i, r in enumerate(block.get("rules") or []))
        return cls(
            enabled=bool(enabled),
            email=_email(block.get("email") or {}, env),
            slack=_slack(block.get("slack") or {}, env),
            thresholds=Thresholds.from_value(block.get("thresholds")),
            rules=rules,
            cooldown_seconds=_num(block, "cooldown_seconds", defaults.cooldown_seconds),
            storm_threshold=int(_num(block, "storm_threshold", defaults.storm_threshold)),
            batch_window=_num(block, "batch_window", defaults.batch_window),
            max_attempts=max(1, int(_num(block, "max_attempts", defaults.max_attempts))),
            retry_backoff=_num(block, "retry_backoff", defaults.retry_backoff),
            slack_retries=int(_num(block, "slack_retries", defaults.slack_retries)),
            new_best_min_episodes=int(_num(block, "new_best_min_episodes", defaults.new_best_min_episodes)),
            status_poll_interval=_num(block, "status_poll_interval", defaults.status_poll_interval),
            dashboard_url=str(block.get("dashboard_url") or dashboard_url or defaults.dashboard_url),
            run_id=block.get("run_id"),
            record=bool(block.get("record", True)),
            consumer=str(block.get("consumer") or defaults.consumer),
            from_start=bool(block.get("from_start", False)),
            endpoints=endpoints or Endpoints.resolve(None, env, None),
            output_dir=output_dir or Path(block.get("output_dir") or defaults.output_dir),
        )

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file_block: Mapping[str, Any] | None = None,
    ) -> AlertsConfig:
        """For ``traindash alerts``: the file's ``training_dashboard.alerts`` block, flags, env."""
        file_block = file_block or {}
        r = Resolver(flags, env, file_block)
        port = r.get("port", "TRAINDASH_PORT", "port", tdconfig.DEFAULT_PORT, int)
        url = r.get(
            "dashboard_url", "TRAINDASH_DASHBOARD_URL", "alerts.dashboard_url", f"http://127.0.0.1:{port}"
        )
        block = dict(file_block.get("alerts") or {})
        block.update({k: flags[k] for k in ("consumer", "from_start") if flags and flags.get(k)})
        return cls.from_mapping(
            block,
            env,
            endpoints=Endpoints.resolve(flags, env, file_block),
            dashboard_url=url,
            output_dir=tdconfig.output_dir(None, file_block),
        )


def _num(block: Mapping[str, Any], key: str, default: float) -> float:
    value = block.get(key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"alerts '{key}': {value!r} is not a number") from None


def _secret(
    block: Mapping[str, Any], key: str, env_key: str, default_env: str, env: Mapping[str, str]
) -> str | None:
    name = block.get(env_key) or default_env
    return env.get(name) or block.get(key) or None


def _email(block: Mapping[str, Any], env: Mapping[str, str]) -> EmailConfig:
    username = block.get("username") or None
    to = block.get("to_addrs") or ([username] if username else [])
    if isinstance(to, str):
        to = [to]
    starttls = block.get("starttls", "auto")
    starttls = {True: "always", False: "never"}.get(starttls, starttls)
    if starttls not in ("auto", "always", "never"):
        raise ConfigError("alerts email 'starttls' must be true, false or \"auto\"")
    port = int(block.get("smtp_port", 587))
    return EmailConfig(
        enabled=bool(block.get("enabled", False)),
        smtp_host=str(block.get("smtp_host", "localhost")),
        smtp_port=port,
        username=username,
        password=_secret(block, "password", "password_env", "TRAINDASH_SMTP_PASSWORD", env),
        from_addr=str(block.get("from_addr") or username or "traindash@localhost"),
        to_addrs=tuple(str(a) for a in to),
        starttls=starttls,
        use_ssl=bool(block.get("use_ssl", port == 465)),
        timeout=float(block.get("timeout", 10.0)),
        ca_file=block.get("ca_file") or None,
    )


def _slack(block: Mapping[str, Any], env: Mapping[str, str]) -> SlackConfig:
    return SlackConfig(
        enabled=bool(block.get("enabled", False)),
        webhook_url=_secret(block, "webhook_url", "webhook_url_env", "TRAINDASH_SLACK_WEBHOOK_URL", env),
        token=_secret(block, "token", "token_env", "TRAINDASH_SLACK_TOKEN", env),
        channel=block.get("channel"),
        timeout=float(block.get("timeout", 10.0)),
        base_url=block.get("base_url"),
    )


def _rule(index: int, raw: Any) -> CustomRuleSpec:
    if not isinstance(raw, Mapping) or not raw.get("condition"):
        raise ConfigError(f"alerts rules[{index}] needs at least a 'condition'")
    level = str(raw.get("level", "warning")).lower()
    if level not in LEVELS:
        raise ConfigError(f"alerts rules[{index}] level {level!r} is not one of {', '.join(LEVELS)}")
    name = str(raw.get("name") or f"custom_{index}")
    return CustomRuleSpec(
        name=name,
        condition=str(raw["condition"]),
        level=level,
        title=str(raw.get("title") or name),
        for_episodes=max(1, int(raw.get("for_episodes", 1))),
        message=str(raw.get("message", "")),
    )

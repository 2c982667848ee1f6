"""Configuration: one frozen dataclass per service, built once.

Every value comes from, in order: a command-line flag, a ``TRAINDASH_*`` environment
variable, the ``training_dashboard`` block of the guide's JSON config file, the default.
This is the only module that reads ``os.environ``. Secrets are read from the environment
only, are never part of a dataclass ``repr``, and never reach a log line.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_INGEST = "tcp://127.0.0.1:5555"
DEFAULT_ROWS = "tcp://127.0.0.1:5556"
DEFAULT_QUERY = "tcp://127.0.0.1:5557"
DEFAULT_DB = "traindash.duckdb"
DEFAULT_PORT = 8050
THEMES = ("cyberpunk", "dark", "light")


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message names it."""


def environ() -> Mapping[str, str]:
    return os.environ


def load_file(path: str | Path | None) -> dict[str, Any]:
    """The ``training_dashboard`` block of a guide-style JSON config (or the whole file)."""
    if path is None:
        path = environ().get("TRAINDASH_CONFIG")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must hold a JSON object")
    block = data.get("training_dashboard", data)
    if not isinstance(block, dict):
        raise ConfigError(f"config {path}: 'training_dashboard' must be an object")
    return block


def _dig(block: Mapping[str, Any], dotted: str) -> Any:
    node: Any = block
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


class Resolver:
    """Looks a value up in flags, then the environment, then the config block, then a default."""

    def __init__(
        self,
        flags: Mapping[str, Any] | None,
        env: Mapping[str, str] | None,
        file_block: Mapping[str, Any] | None,
    ) -> None:
        self.flags = flags or {}
        self.env = environ() if env is None else env
        self.block = file_block or {}

    def get(
        self, flag: str, env: str | None, dotted: str | None, default: Any, kind: Callable[[Any], Any] = str
    ) -> Any:
        value = self.flags.get(flag)
        source = f"--{flag.replace('_', '-')}"
        if value is None and env and env in self.env:
            value, source = self.env[env], env
        if value is None and dotted:
            value, source = _dig(self.block, dotted), f"config '{dotted}'"
        if value is None:
            return default
        try:
            if kind is bool and isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{source}: {value!r} is not a valid {kind.__name__}") from None


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


OFF = ("", "0", "off", "false", "no", "none")


def interval(value: Any) -> float:
    """Seconds between samples; 0 (also ``off``, ``false``, ``none``, JSON false) is off."""
    if value is False or (isinstance(value, str) and value.strip().lower() in OFF):
        return 0.0
    seconds = float(value)
    if not seconds >= 0 or seconds == float("inf"):
        raise ValueError(value)
    return seconds


_SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_SIZE_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})


def parse_size(text: str) -> int:
    """Bytes in a size such as ``'512MB'`` or ``'1.5 GiB'``, with DuckDB's units (GB = 10^9)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*", text, re.IGNORECASE)
    unit = (match.group(2) or "").upper() if match else "?"
    if match is None or unit not in _SIZE_UNITS:
        raise ConfigError(f"size {text!r} is not like '512MB' or '2GB'")
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


@dataclass(frozen=True)
class Endpoints:
    """Where the collector's three sockets are."""

    ingest: str = DEFAULT_INGEST
    rows: str = DEFAULT_ROWS
    query: str = DEFAULT_QUERY

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file_block: Mapping[str, Any] | None = None,
    ) -> Endpoints:
        r = Resolver(flags, env, file_block)
        return cls(
            ingest=r.get("ingest", "TRAINDASH_INGEST", "collector.ingest", DEFAULT_INGEST),
            rows=r.get("rows", "TRAINDASH_ROWS", "collector.rows", DEFAULT_ROWS),
            query=r.get("query", "TRAINDASH_QUERY", "collector.query", DEFAULT_QUERY),
        )


@dataclass(frozen=True)
class CollectorConfig:
    """Settings of the collector process."""

    endpoints: Endpoints = field(default_factory=Endpoints)
    db: Path = Path(DEFAULT_DB)
    commit_interval: float = 0.005
    max_batch_rows: int = 200_000
    max_message_bytes: int = 64 * 1024 * 1024
    query_timeout: float = 30.0
    query_max_rows: int = 1_000_000
    stall_after: float = 5.0
    lost_after: float = 30.0
    memory_limit: str = "1GB"
    # Query workers (docs/queries.md): how many, how many only the service lane may use,
    # a single result's byte cap, and the RSS past which queries are interrupted ("" =
    # derived from the others, see there).
    query_workers: int = 4
    query_reserved: int = 1
    query_max_bytes: int = 64 * 1024 * 1024
    memory_bound: str = ""
    curve_secret: Path | None = None
    curve_allow: Path | None = None
    # Test-only (TRAINDASH_TEST_INVALIDATE_FILE): when this file exists at a commit, the
    # collector deletes it and acts as if DuckDB had invalidated the database (it reopens).
    test_invalidate_file: Path | None = None

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file_block: Mapping[str, Any] | None = None,
    ) -> CollectorConfig:
        r = Resolver(flags, env, file_block)
        return cls(
            endpoints=Endpoints.resolve(flags, env, file_block),
            db=Path(r.get("db", "TRAINDASH_DB", "collector.db", DEFAULT_DB)),
            max_message_bytes=r.get(
                "max_message_bytes",
                "TRAINDASH_MAX_MESSAGE_BYTES",
                "collector.max_message_bytes",
                cls.max_message_bytes,
                int,
            ),
            query_timeout=r.get(
                "query_timeout",
                "TRAINDASH_QUERY_TIMEOUT",
                "collector.query_timeout",
                cls.query_timeout,
                float,
            ),
            query_max_rows=r.get(
                "query_max_rows",
                "TRAINDASH_QUERY_MAX_ROWS",
                "collector.query_max_rows",
                cls.query_max_rows,
                int,
            ),
            stall_after=r.get(
                "stall_after", "TRAINDASH_STALL_AFTER", "collector.stall_after", cls.stall_after, float
            ),
            lost_after=r.get(
                "lost_after", "TRAINDASH_LOST_AFTER", "collector.lost_after", cls.lost_after, float
            ),
            memory_limit=r.get(
                "memory_limit", "TRAINDASH_MEMORY_LIMIT", "collector.memory_limit", cls.memory_limit
            ),
            **_query_settings(r),
            curve_secret=_path(
                r.get("curve_secret", "TRAINDASH_CURVE_SECRET", "collector.curve_secret", None)
            ),
            curve_allow=_path(r.get("curve_allow", "TRAINDASH_CURVE_ALLOW", "collector.curve_allow", None)),
            test_invalidate_file=_path(
                r.get("test_invalidate_file", "TRAINDASH_TEST_INVALIDATE_FILE", None, None)
            ),
        )


def _query_settings(r: Resolver) -> dict[str, Any]:
    """The query workers' settings, checked (see docs/queries.md)."""
    c = CollectorConfig
    out = {
        "query_workers": r.get(
            "query_workers", "TRAINDASH_QUERY_WORKERS", "collector.query_workers", c.query_workers, int
        ),
        "query_reserved": r.get(
            "query_reserved", "TRAINDASH_QUERY_RESERVED", "collector.query_reserved", c.query_reserved, int
        ),
        "query_max_bytes": r.get(
            "query_max_bytes",
            "TRAINDASH_QUERY_MAX_BYTES",
            "collector.query_max_bytes",
            c.query_max_bytes,
            int,
        ),
        "memory_bound": r.get("memory_bound", "TRAINDASH_MEMORY_BOUND", "collector.memory_bound", ""),
    }
    if not 0 <= out["query_reserved"] < out["query_workers"]:
        raise ConfigError(
            f"query_reserved ({out['query_reserved']}) must be at least 0 and below "
            f"query_workers ({out['query_workers']}), so console queries get a worker"
        )
    if out["query_max_bytes"] < 1024:
        raise ConfigError(f"query_max_bytes {out['query_max_bytes']} is below 1024")
    if out["memory_bound"]:
        parse_size(out["memory_bound"])
    return out


SENDERS = ("thread", "process")


@dataclass(frozen=True)
class ProducerConfig:
    """Settings of a MetricsLogger's sender (intervals are in seconds)."""

    endpoints: Endpoints = field(default_factory=Endpoints)
    # The sender wakes when buffer_size records wait, or after flush_interval at most.
    # Each wake-up costs the training thread GIL hand-offs and the sender's cold-cache
    # Python time; at 1,000 records/s, 0.1 s matches buffer_size=100 (10 wake-ups/s).
    flush_interval: float = 0.1
    max_batch_rows: int = 4096
    heartbeat_interval: float = 1.0
    resend_after: float = 2.0
    close_timeout: float = 10.0
    max_unacked_bytes: int = 2 * 1024 * 1024
    # "thread": a sender thread in the training process; "process": a shipper process fed
    # through shared memory (see producer/shipper_client.py and producer/shipper.py).
    sender: str = "thread"
    curve: CurveClient | None = None
    # Seconds between system-metrics samples (CPU, memory, GPUs; producer/system.py); 0 is off.
    system_interval: float = 10.0

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file_block: Mapping[str, Any] | None = None,
    ) -> ProducerConfig:
        r = Resolver(flags, env, file_block)
        sender = r.get("sender", "TRAINDASH_SENDER", "metrics_logging.sender", cls.sender)
        if sender not in SENDERS:
            raise ConfigError(f"sender {sender!r} is not one of {', '.join(SENDERS)}")
        return cls(
            endpoints=Endpoints.resolve(flags, env, file_block),
            flush_interval=r.get(
                "flush_interval",
                "TRAINDASH_FLUSH_INTERVAL",
                "metrics_logging.flush_interval",
                cls.flush_interval,
                float,
            ),
            resend_after=r.get(
                "resend_after",
                "TRAINDASH_RESEND_AFTER",
                "metrics_logging.resend_after",
                cls.resend_after,
                float,
            ),
            close_timeout=r.get(
                "close_timeout",
                "TRAINDASH_CLOSE_TIMEOUT",
                "metrics_logging.close_timeout",
                cls.close_timeout,
                float,
            ),
            max_unacked_bytes=r.get(
                "max_unacked_bytes",
                "TRAINDASH_MAX_UNACKED_BYTES",
                "metrics_logging.max_unacked_bytes",
                cls.max_unacked_bytes,
                int,
            ),
            sender=sender,
            curve=curve_client(env),
            system_interval=r.get(
                "system_interval",
                "TRAINDASH_SYSTEM_INTERVAL",
                "metrics_logging.system_metrics_interval",
                cls.system_interval,
                interval,
            ),
        )


@dataclass(frozen=True)
class UIConfig:
    """Settings of the Panel dashboard server."""

    endpoints: Endpoints = field(default_factory=Endpoints)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    theme: str = "cyberpunk"
    update_interval: int = 2000
    db: Path = Path(DEFAULT_DB)
    # Dashboard login (ui/auth.py): required off loopback unless no_auth; the password only
    # from TRAINDASH_UI_PASSWORD, never a flag.
    user: str = "traindash"
    password: str | None = field(default=None, repr=False)
    no_auth: bool = False

    @classmethod
    def resolve(
        cls,
        flags: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        file_block: Mapping[str, Any] | None = None,
    ) -> UIConfig:
        r = Resolver(flags, env, file_block)
        theme = r.get("theme", "TRAINDASH_THEME", "theme", "cyberpunk")
        if theme not in THEMES:
            raise ConfigError(f"theme {theme!r} is not one of {', '.join(THEMES)}")
        port = r.get("port", "TRAINDASH_PORT", "port", DEFAULT_PORT, int)
        if not 0 <= port <= 65535:
            raise ConfigError(f"port {port} is out of range")
        return cls(
            endpoints=Endpoints.resolve(flags, env, file_block),
            host=r.get("host", "TRAINDASH_UI_HOST", "host", "127.0.0.1"),
            port=port,
            theme=theme,
            update_interval=r.get(
                "update_interval", "TRAINDASH_UPDATE_INTERVAL", "update_interval_ms", 2000, int
            ),
            db=Path(r.get("db", "TRAINDASH_DB", "collector.db", DEFAULT_DB)),
            user=r.get("user", "TRAINDASH_UI_USER", "ui_user", "traindash"),
            password=r.env.get("TRAINDASH_UI_PASSWORD") or None,
            no_auth=bool(r.flags.get("no_auth")),
        )


@dataclass(frozen=True)
class CurveClient:
    """A client's CURVE keys: its own secret certificate and the collector's public one."""

    client_secret_file: Path
    server_public_file: Path


def curve_client(env: Mapping[str, str] | None = None) -> CurveClient | None:
    """Client keys from ``TRAINDASH_CURVE_CLIENT`` and ``TRAINDASH_CURVE_SERVER``, if set."""
    env = environ() if env is None else env
    client, server = env.get("TRAINDASH_CURVE_CLIENT"), env.get("TRAINDASH_CURVE_SERVER")
    if not client and not server:
        return None
    if not (client and server):
        raise ConfigError(
            "set both TRAINDASH_CURVE_CLIENT (your .key_secret) and "
            "TRAINDASH_CURVE_SERVER (the collector's .key)"
        )
    return CurveClient(Path(client), Path(server))


def output_dir(explicit: str | None, file_block: Mapping[str, Any] | None = None) -> Path:
    r = Resolver({"output_dir": explicit}, None, file_block)
    return Path(r.get("output_dir", "TRAINDASH_OUTPUT_DIR", "metrics_logging.output_dir", "training_logs"))


def secret(name: str) -> str | None:
    """A secret from the environment (``name`` is the variable), or None."""
    value = environ().get(name)
    return value or None

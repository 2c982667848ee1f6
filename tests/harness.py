"""Real processes on free loopback ports, torn down by every test that starts them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from traindash.config import Endpoints, ProducerConfig
from traindash.query import CollectorBusy, CollectorUnavailable, QueryClient, QueryError, QueryTimeout
from traindash.ui.processes import free_endpoints, free_port

ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def env_for(endpoints: Endpoints, db: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TRAINDASH_INGEST=endpoints.ingest,
        TRAINDASH_ROWS=endpoints.rows,
        TRAINDASH_QUERY=endpoints.query,
        TRAINDASH_DB=str(db),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def traindash_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "traindash.cli", *args]


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 60, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        traindash_cmd(*args), env=env, cwd=cwd or ROOT, capture_output=True, text=True, timeout=timeout
    )


@dataclass
class CollectorProcess:
    """A ``traindash collector`` child process with its own DuckDB file and ports."""

    db: Path
    endpoints: Endpoints
    log_path: Path
    proc: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return env_for(self.endpoints, self.db, **self.extra_env)

    def producer_config(self, **overrides: Any) -> ProducerConfig:
        return ProducerConfig(endpoints=self.endpoints, **overrides)

    def start(self, wait: bool = True) -> CollectorProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                traindash_cmd("collector"), env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        if wait:
            wait_for(self.answers, 30, "the collector to answer queries")
        return self

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
        try:
            self.query("SELECT 1", timeout=0.5)
            return True
        except (CollectorUnavailable, CollectorBusy, QueryTimeout):
            return False

    def query(self, sql: str, timeout: float = 10.0) -> pa.Table:
        with QueryClient(self.endpoints.query, timeout=timeout) as client:
            return client.query(sql)

    def scalar(self, sql: str) -> Any:
        table = self.query(sql)
        return table.column(0)[0].as_py()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"collector did not stop within {timeout} s") from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


__all__ = [
    "CollectorProcess",
    "QueryError",
    "env_for",
    "free_endpoints",
    "free_port",
    "run_cli",
    "traindash_cmd",
    "wait_for",
]

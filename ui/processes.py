"""Starting and stopping the child processes of the embedded and all-in-one dashboards.

Only processes started here are ever stopped here, by their own Popen handle.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from traindash.config import Endpoints, environ
from traindash.query import CollectorUnavailable, QueryClient, QueryError

STOP_TIMEOUT = 10.0


def collector_answers(query_endpoint: str, timeout: float = 0.5) -> bool:
    """True when a collector answers a trivial query on ``query_endpoint``."""
    try:
        with QueryClient(query_endpoint, timeout=timeout, lane="service") as client:
            client.query("SELECT 1")
        return True
    except CollectorUnavailable:
        return False
    except QueryError:
        return True


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def endpoint_flags(endpoints: Endpoints, *which: str) -> list[str]:
    out = []
    for name in which or ("ingest", "rows", "query"):
        out += [f"--{name}", getattr(endpoints, name)]
    return out


def endpoint_env(endpoints: Endpoints) -> dict[str, str]:
    """This process's environment pointing ``TRAINDASH_*`` endpoints at ``endpoints``."""
    return dict(
        environ(),
        TRAINDASH_INGEST=endpoints.ingest,
        TRAINDASH_ROWS=endpoints.rows,
        TRAINDASH_QUERY=endpoints.query,
    )


def traindash(*args: str) -> list[str]:
    return [sys.executable, "-m", "traindash.cli", *args]


@dataclass
class Children:
    """Child processes this object started, stopped newest first."""

    log_dir: Path
    procs: list[tuple[str, subprocess.Popen]] = field(default_factory=list)

    def start(
        self, name: str, argv: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_dir / f"traindash-{name}.log", "ab") as log:
            proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd, stdin=subprocess.DEVNULL, env=env
            )
        self.procs.append((name, proc))
        return proc

    def alive(self, name: str) -> bool:
        return any(n == name and p.poll() is None for n, p in self.procs)

    def get(self, name: str) -> subprocess.Popen | None:
        return next((p for n, p in self.procs if n == name), None)

    def log(self, name: str) -> str:
        path = self.log_dir / f"traindash-{name}.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_until(self, name: str, ready: object, timeout: float) -> None:
        """Poll ``ready()`` until it holds; fail early if the child exits."""
        proc = self.get(name)
        deadline = time.monotonic() + timeout
        while not ready():  # type: ignore[operator]
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"traindash {name} exited with {proc.returncode}:\n{self.log(name)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"traindash {name} was not ready within {timeout:g} s:\n{self.log(name)}")
            time.sleep(0.05)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM each child (newest first: trainers, ui, then the collector), then kill."""
        for _name, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_collector_on_free_ports(
    children: Children, db: Path, cwd: Path | None = None, attempts: int = 3, timeout: float = 60.0
) -> Endpoints:
    """A collector child on three free loopback ports (scripts and benchmarks).

    A port found free can be taken by another process before the collector binds it,
    so a failed start is retried on new ports.
    """
    for attempt in range(attempts):
        ep = Endpoints(*(f"tcp://127.0.0.1:{free_port()}" for _ in range(3)))
        name = f"collector-{attempt}" if attempt else "collector"
        children.start(name, traindash("collector", "--db", str(db), *endpoint_flags(ep)), cwd=cwd)
        try:
            children.wait_until(name, lambda ep=ep: collector_answers(ep.query), timeout)
            return ep
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")

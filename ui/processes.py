"""Starting and stopping the child processes of the embedded and all-in-one dashboards.

Only processes started here are ever stopped here, by their own Popen handle.
"""

from __future__ import annotations

import functools
import itertools
import random
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
from traindash.query import collector_answers

STOP_TIMEOUT = 10.0
START_TIMEOUT = 60.0


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


@functools.cache
def ports_below_ephemeral() -> range:
    """Loopback ports the kernel never hands out for outgoing connections or ``bind(0)``."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return range(10_000, max(low, 20_000))


_next_port: itertools.count[int] | None = None


def free_port() -> int:
    """A loopback port that is free now and was not given out before in this process.

    A port from ``bind(0)`` lies in the ephemeral range, where any outgoing connection may
    take it between this check and the server's own bind; below that range only servers
    bind, and this process never hands out the same port twice.
    """
    global _next_port
    ports = ports_below_ephemeral()
    if _next_port is None:  # a random start: processes started together seldom collide
        _next_port = itertools.count(random.randrange(len(ports)))
    for _ in range(len(ports)):
        port = ports[next(_next_port) % len(ports)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port below the ephemeral range")


def free_endpoints() -> Endpoints:
    """Three free loopback endpoints for a collector."""
    return Endpoints(*(f"tcp://127.0.0.1:{free_port()}" for _ in range(3)))


def start_collector(
    children: Children,
    endpoints: Endpoints,
    db: Path,
    name: str = "collector",
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT,
) -> None:
    """Start a ``traindash collector`` child writing ``db`` and wait until it answers."""
    children.start(name, traindash("collector", "--db", str(db), *endpoint_flags(endpoints)), cwd=cwd)
    children.wait_until(name, lambda: collector_answers(endpoints.query), timeout)


def start_collector_on_free_ports(
    children: Children, db: Path, cwd: Path | None = None, attempts: int = 3, timeout: float = START_TIMEOUT
) -> Endpoints:
    """A collector child on three free loopback ports (scripts and benchmarks).

    A port found free can be taken by another process before the collector binds it,
    so a failed start is retried on new ports.
    """
    for attempt in range(attempts):
        ep = free_endpoints()
        name = f"collector-{attempt}" if attempt else "collector"
        try:
            start_collector(children, ep, db, name, cwd, timeout)
            return ep
        except RuntimeError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def start_dashboard(
    children: Children,
    endpoints: Endpoints,
    db: Path,
    host: str,
    port: int,
    theme: str,
    update_interval: int,
    timeout: float = START_TIMEOUT,
    no_auth: bool = False,
) -> bool:
    """A collector writing ``db`` unless one answers on ``endpoints``, then the ui server on
    ``host:port``; returns whether it started the collector. Waits until each is ready."""
    started = not collector_answers(endpoints.query)
    if started:
        start_collector(children, endpoints, db, timeout=timeout)
    start_ui(children, endpoints, host, port, theme, update_interval, timeout=timeout, no_auth=no_auth)
    return started


def start_ui(
    children: Children,
    endpoints: Endpoints,
    host: str,
    port: int,
    theme: str,
    update_interval: int,
    cwd: Path | None = None,
    timeout: float = START_TIMEOUT,
    no_auth: bool = False,
) -> str:
    """Start a ``traindash ui`` child on ``host:port`` and wait until it answers; its URL."""
    ui = traindash(
        "ui",
        "--host",
        host,
        "--port",
        str(port),
        "--theme",
        theme,
        "--update-interval",
        str(update_interval),
        *endpoint_flags(endpoints, "rows", "query"),
        *(["--no-auth"] if no_auth else []),
    )
    url = f"http://{host}:{port}/"
    children.start("ui", ui, cwd=cwd)
    # /healthz, not a page: a page builds a session, seconds of work on a busy machine.
    children.wait_until("ui", lambda: http_ok(url + "healthz"), timeout)
    return url

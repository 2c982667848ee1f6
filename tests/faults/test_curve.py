"""CURVE: only allow-listed trainer keys publish; plaintext and unknown keys are refused."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.harness import ROOT, CollectorProcess, free_port, run_cli, traindash_cmd, wait_for

pytestmark = pytest.mark.slow

TRAINER = r"""
import sys
from traindash.producer import MetricsLogger
lg = MetricsLogger(sys.argv[1], output_dir=sys.argv[2])
for i in range(200):
    lg.log_episode(i, 1.0)
ok = lg.flush(timeout=float(sys.argv[3]))
lg.close(timeout=0.1)
print("acked" if ok else "not-acked")
"""


def make_keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    res = run_cli("keys", "collector", "good", "stranger", "--dir", str(keys), env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    shutil.copy(keys / "good.key", allowed / "good.key")
    return keys


def client_env(base: dict[str, str], keys: Path, who: str | None) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("TRAINDASH_CURVE")}
    if who:
        env.update(
            TRAINDASH_CURVE_CLIENT=str(keys / f"{who}.key_secret"),
            TRAINDASH_CURVE_SERVER=str(keys / "collector.key"),
        )
    return env


def trainer(env: dict[str, str], name: str, out: Path, wait: float, prefix: list[str] | None = None) -> str:
    res = subprocess.run(
        (prefix or []) + [sys.executable, "-c", TRAINER, name, str(out), str(wait)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_curve_on_loopback(stopped_collector: CollectorProcess, tmp_path: Path) -> None:
    keys = make_keys(tmp_path)
    c = stopped_collector
    c.extra_env.update(
        TRAINDASH_CURVE_SECRET=str(keys / "collector.key_secret"),
        TRAINDASH_CURVE_ALLOW=str(tmp_path / "allowed"),
    )
    c.extra_env.update(
        TRAINDASH_CURVE_CLIENT=str(keys / "good.key_secret"),
        TRAINDASH_CURVE_SERVER=str(keys / "collector.key"),
    )
    with open(c.log_path, "wb") as log_file:
        c.proc = subprocess.Popen(
            traindash_cmd("collector"), env=c.env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT
        )
    good = c.env
    wait_for(
        lambda: run_cli("sql", "SELECT 1", "--timeout", "1", env=good).returncode == 0,
        30,
        "the CURVE collector to answer a keyed client",
    )
    assert trainer(good, "good", tmp_path, 20) == "acked"
    assert trainer(client_env(good, keys, None), "plain", tmp_path, 2) == "not-acked"
    assert trainer(client_env(good, keys, "stranger"), "stranger", tmp_path, 2) == "not-acked"
    count = run_cli(
        "sql",
        "SELECT experiment, count(*) AS n FROM episodes JOIN runs USING (run_id) GROUP BY ALL",
        "--format",
        "csv",
        env=good,
    )
    assert count.stdout.splitlines() == ["experiment,n", "good,200"]
    plain_sql = run_cli("sql", "SELECT 1", "--timeout", "1", env=client_env(good, keys, None))
    assert plain_sql.returncode != 0  # no answer without keys, and the file is locked
    log = c.log()
    assert "refused a connection: DENIED (CURVE)" in log
    assert "refused a connection: handshake failed" in log


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_hosts():  # type: ignore[no-untyped-def]
    """Two network namespaces joined by a veth pair: the collector's host and a trainer's."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    tag = uuid.uuid4().hex[:6]
    col, trn = f"tdc{tag}", f"tdt{tag}"
    try:
        _ip("netns", "add", col)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces here: {exc.stderr.strip()}")
    try:
        _ip("netns", "add", trn)
        _ip("link", "add", f"va{tag}", "type", "veth", "peer", "name", f"vb{tag}")
        _ip("link", "set", f"va{tag}", "netns", col)
        _ip("link", "set", f"vb{tag}", "netns", trn)
        _ip("-n", col, "addr", "add", "10.231.7.1/24", "dev", f"va{tag}")
        _ip("-n", trn, "addr", "add", "10.231.7.2/24", "dev", f"vb{tag}")
        for ns, dev in ((col, f"va{tag}"), (trn, f"vb{tag}")):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield col, trn
    finally:
        for ns in (col, trn):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_curve_across_two_hosts(two_hosts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    col_ns, trn_ns = two_hosts
    keys = make_keys(tmp_path)
    ports = [free_port() for _ in range(3)]
    eps = {
        name: f"tcp://10.231.7.1:{port}"
        for name, port in zip(("ingest", "rows", "query"), ports, strict=True)
    }
    base = dict(
        os.environ,
        TRAINDASH_INGEST=eps["ingest"],
        TRAINDASH_ROWS=eps["rows"],
        TRAINDASH_QUERY=eps["query"],
        TRAINDASH_DB=str(tmp_path / "net.duckdb"),
    )
    col_env = dict(
        client_env(base, keys, "good"),
        TRAINDASH_CURVE_SECRET=str(keys / "collector.key_secret"),
        TRAINDASH_CURVE_ALLOW=str(tmp_path / "allowed"),
    )
    log_path = tmp_path / "collector.log"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", col_ns] + traindash_cmd("collector"),
            env=col_env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        in_trn = ["ip", "netns", "exec", trn_ns]
        good = client_env(base, keys, "good")
        wait_for(
            lambda: (
                subprocess.run(
                    in_trn + traindash_cmd("sql", "SELECT 1", "--timeout", "1"),
                    env=good,
                    capture_output=True,
                    cwd=ROOT,
                ).returncode
                == 0
            ),
            30,
            "the collector to answer across the veth link",
        )
        assert trainer(good, "remote-good", tmp_path, 20, in_trn) == "acked"
        assert trainer(client_env(base, keys, None), "remote-plain", tmp_path, 2, in_trn) == "not-acked"
        assert (
            trainer(client_env(base, keys, "stranger"), "remote-stranger", tmp_path, 2, in_trn) == "not-acked"
        )
        res = subprocess.run(
            in_trn
            + traindash_cmd(
                "sql",
                "SELECT r.experiment, r.host, count(*) AS n FROM episodes e JOIN runs r "
                "USING (run_id) GROUP BY ALL",
                "--format",
                "csv",
            ),
            env=good,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        lines = res.stdout.splitlines()
        assert len(lines) == 2 and lines[1].startswith("remote-good,") and lines[1].endswith(",200")
        log = log_path.read_text()
        assert "DENIED (CURVE)" in log and "handshake failed" in log
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

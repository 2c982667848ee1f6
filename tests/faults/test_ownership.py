"""CURVE after a reopen, and runs bound to the key that opened them (issue 18)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from tests.harness import CollectorProcess, wait_for
from traindash import security, wire
from traindash.config import CurveClient
from traindash.producer import MetricsLogger
from traindash.query import CollectorUnavailable, QueryClient

pytestmark = pytest.mark.slow


def curve_collector(c: CollectorProcess, tmp_path: Path, *allowed: str) -> Path:
    """Keys for the collector and ``allowed`` clients (plus a stranger); CURVE env on ``c``."""
    keys = tmp_path / "keys"
    for name in ("collector", "stranger", *allowed):
        security.make_keys(keys, name)
    allow = tmp_path / "allowed"
    allow.mkdir()
    for name in allowed:
        shutil.copy(keys / f"{name}.key", allow / f"{name}.key")
    c.extra_env.update(
        TRAINDASH_CURVE_SECRET=str(keys / "collector.key_secret"),
        TRAINDASH_CURVE_ALLOW=str(allow),
    )
    return keys


def client(keys: Path, who: str) -> CurveClient:
    return CurveClient(keys / f"{who}.key_secret", keys / "collector.key")


def answers(endpoint: str, curve: CurveClient | None, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether a query client with these keys (or none) gets an answer."""
    with monkeypatch.context() as m:
        for name in ("TRAINDASH_CURVE_CLIENT", "TRAINDASH_CURVE_SERVER"):
            m.delenv(name, raising=False)
        if curve is not None:
            m.setenv("TRAINDASH_CURVE_CLIENT", str(curve.client_secret_file))
            m.setenv("TRAINDASH_CURVE_SERVER", str(curve.server_public_file))
        try:
            with QueryClient(endpoint, timeout=1.0) as qc:
                return qc.query("SELECT 1").num_rows == 1
        except CollectorUnavailable:
            return False


def count(endpoint: str, sql: str, curve: CurveClient, monkeypatch: pytest.MonkeyPatch) -> int:
    with monkeypatch.context() as m:
        m.setenv("TRAINDASH_CURVE_CLIENT", str(curve.client_secret_file))
        m.setenv("TRAINDASH_CURVE_SERVER", str(curve.server_public_file))
        with QueryClient(endpoint, timeout=10.0) as qc:
            return int(qc.query(sql).column(0)[0].as_py())


def test_the_query_socket_stays_curve_after_a_reopen(
    stopped_collector: CollectorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = stopped_collector
    keys = curve_collector(c, tmp_path, "good")
    hook = tmp_path / "invalidate-now"
    c.extra_env["TRAINDASH_TEST_INVALIDATE_FILE"] = str(hook)
    good = client(keys, "good")
    c.start(wait=False)
    query = c.endpoints.query
    wait_for(lambda: answers(query, good, monkeypatch), 30, f"the collector to answer\n{c.log()}")
    assert not answers(query, None, monkeypatch)

    hook.touch()  # the next commit fails as if DuckDB had invalidated the database
    lg = MetricsLogger(
        "reopen", output_dir=str(tmp_path / "t"), config=c.producer_config(curve=good, resend_after=0.5)
    )
    try:
        for i in range(50):
            lg.log_episode(i, float(i))
        assert lg.flush(60), c.log()
    finally:
        lg.close(timeout=10)
    assert not hook.exists()
    assert "reopening" in c.log() and "after a fatal database error" in c.log()
    wait_for(
        lambda: answers(query, good, monkeypatch) or answers(query, None, monkeypatch),
        30,
        "the reopened query socket",
    )
    assert not answers(query, None, monkeypatch), "a plaintext client was answered after the reopen"
    assert answers(query, good, monkeypatch)
    assert count(query, "SELECT count(*) FROM episodes", good, monkeypatch) == 50
    assert not answers(query, client(keys, "stranger"), monkeypatch)


def forged_batch(run_id: str, first: int, n: int) -> list[bytes]:
    seqs = np.arange(first, first + n, dtype=np.int64)
    cols = {
        "seq": seqs,
        "ts": np.full(n, time.time()),
        "episode": seqs,
        "profit": np.full(n, -1e9),
    }
    return wire.encode(
        wire.Batch(run_id, first, first + n - 1, (wire.Section(wire.RecordKind.EPISODE, cols),))
    )


def test_a_batch_for_a_run_another_key_opened_is_refused(
    stopped_collector: CollectorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = stopped_collector
    keys = curve_collector(c, tmp_path, "good", "mallory")
    good = client(keys, "good")
    c.start(wait=False)
    wait_for(lambda: answers(c.endpoints.query, good, monkeypatch), 30, f"the collector\n{c.log()}")
    lg = MetricsLogger(
        "victim", output_dir=str(tmp_path / "t"), run_id="victim-run", config=c.producer_config(curve=good)
    )
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    try:
        for i in range(100):
            lg.log_episode(i, 1.0)
        assert lg.flush(30)
        acked = count(
            c.endpoints.query, "SELECT acked_seq FROM runs WHERE run_id = 'victim-run'", good, monkeypatch
        )
        # mallory holds an allowed key too, and claims the victim's next 500 seqs
        security.secure_client(pub, client(keys, "mallory"))
        pub.connect(c.endpoints.ingest)
        frames = forged_batch("victim-run", acked + 1, 500)

        def refused_or_taken() -> bool:
            pub.send_multipart(frames)
            refused = count(
                c.endpoints.query,
                "SELECT coalesce(sum(count), 0) FROM rejects WHERE reason = 'foreign-run'",
                good,
                monkeypatch,
            )
            mark = count(
                c.endpoints.query, "SELECT acked_seq FROM runs WHERE run_id = 'victim-run'", good, monkeypatch
            )
            return refused > 0 or mark > acked

        wait_for(refused_or_taken, 30, "the forged batch to reach the collector", interval=0.2)
        for i in range(100, 200):
            lg.log_episode(i, 1.0)
        assert lg.flush(30)
    finally:
        pub.close(0)
        ctx.term()
        lg.close(timeout=10)
    q = c.endpoints.query
    assert count(q, "SELECT count(*) FROM episodes WHERE run_id = 'victim-run'", good, monkeypatch) == 200
    assert count(q, "SELECT count(*) FROM episodes WHERE profit < 0", good, monkeypatch) == 0
    assert count(q, "SELECT count(*) FROM rejects WHERE reason = 'foreign-run'", good, monkeypatch) == 1
    owner = (keys / "good.key").read_text()
    with monkeypatch.context() as m:
        m.setenv("TRAINDASH_CURVE_CLIENT", str(good.client_secret_file))
        m.setenv("TRAINDASH_CURVE_SERVER", str(good.server_public_file))
        with QueryClient(q, timeout=10) as qc:
            stored = qc.query("SELECT owner_key FROM runs WHERE run_id = 'victim-run'").column(0)[0].as_py()
    assert stored and stored in owner  # the Z85 public key from good.key
    assert "rejected a foreign-run message from" in c.log()

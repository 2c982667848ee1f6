"""close() against a busy collector, a missing one, and a first commit that adds many columns."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import zmq

from tests.harness import ROOT, CollectorProcess, free_endpoints, wait_for
from traindash import wire
from traindash.config import ProducerConfig
from traindash.producer import MetricsLogger

# Test-only fault: the collector's next commit after MARKER appears stalls for SECONDS
# (standing in for a genuinely slow one: a slow disk, a checkpoint, a huge first batch).
STALLING_COLLECTOR = r"""
import sys, time
from pathlib import Path
from traindash.collector import store

marker, stalling, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
commit = store.Store.commit

def stalled_commit(self, work):
    if marker.exists():
        marker.unlink()
        stalling.touch()
        time.sleep(seconds)
        stalling.unlink()
    return commit(self, work)

store.Store.commit = stalled_commit
from traindash.cli import main
sys.exit(main(["collector"]))
"""
STALL_S = 10.0


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _probe(endpoints: object, run_id: str, timeout: float) -> wire.Ack | None:
    """Heartbeat as a producer would until the collector answers it (None: no answer)."""
    ctx = zmq.Context()
    pub, sub = ctx.socket(zmq.PUB), ctx.socket(zmq.SUB)
    try:
        for sock in (pub, sub):
            sock.setsockopt(zmq.LINGER, 0)
        pub.connect(endpoints.ingest)  # type: ignore[attr-defined]
        sub.setsockopt(zmq.SUBSCRIBE, wire.ack_topic(run_id))
        sub.connect(endpoints.rows)  # type: ignore[attr-defined]
        sent: set[float] = set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ts = time.time()
            sent.add(ts)
            pub.send_multipart(wire.encode(wire.Heartbeat(run_id, 0, ts)))
            if sub.poll(100):
                msg = wire.decode(sub.recv_multipart())
                if isinstance(msg, wire.Ack) and msg.probe in sent:
                    return msg
        return None
    finally:
        pub.close()
        sub.close()
        ctx.term()


def test_close_without_a_collector_gives_up_after_the_grace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="traindash.producer")
    lg = MetricsLogger("alone", output_dir=str(tmp_path), config=ProducerConfig(endpoints=free_endpoints()))
    lg.log_episode(1, 1.0)
    t0 = time.monotonic()
    lg.close(timeout=60)  # longer than the config's close_timeout: the grace still applies
    took = time.monotonic() - t0
    assert took < 20, f"close() with nobody listening took {took:.1f} s"
    (message,) = _warnings(caplog)
    assert "not yet acknowledged" in message and "no collector is listening" in message
    assert (tmp_path / f"{lg.run_id}.spool").exists()


def test_close_waits_for_a_collector_stalled_in_its_first_commit(
    stopped_collector: CollectorProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="traindash.producer")
    c = stopped_collector
    marker, stalling = tmp_path / "stall-next-commit", tmp_path / "stalling"
    with open(c.log_path, "ab") as log:
        c.proc = subprocess.Popen(
            [sys.executable, "-c", STALLING_COLLECTOR, str(marker), str(stalling), str(STALL_S)],
            env=c.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    wait_for(c.answers, 30, "the collector to answer queries")
    marker.touch()  # the logger's very first commit stalls: no ack before close()
    out = tmp_path / "logs"
    lg = MetricsLogger("stalled", output_dir=str(out), config=c.producer_config(close_timeout=60))
    for i in range(20):
        lg.log_episode(i, float(i))
    wait_for(stalling.exists, 30, "the collector to stall in a commit")
    closed: list[float] = []
    t0 = time.monotonic()
    closer = threading.Thread(target=lambda: (lg.close(), closed.append(time.monotonic() - t0)))
    closer.start()
    try:
        answer = _probe(c.endpoints, "probe-during-stall", timeout=STALL_S / 2)
        assert answer is not None, "no heartbeat was answered while the collector committed"
        assert stalling.exists(), "the answer came only after the stall"
        assert answer.acked == 0 and answer.have == 0
    finally:
        closer.join(timeout=90)
    assert closed, "close() did not return"
    assert not stalling.exists(), "close() returned before the stalled commit ended"
    assert _warnings(caplog) == []
    assert not (out / f"{lg.run_id}.spool").exists()
    assert c.scalar(f"SELECT count(*) FROM episodes WHERE run_id = '{lg.run_id}'") == 20
    assert c.scalar(f"SELECT status FROM runs WHERE run_id = '{lg.run_id}'") == "finished"


def test_two_thousand_custom_names_close_without_warning(
    collector: CollectorProcess, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from traindash.collector.tables import MAX_CUSTOM_COLUMNS

    caplog.set_level(logging.WARNING, logger="traindash.producer")
    lg = MetricsLogger("wide", output_dir=str(tmp_path), config=collector.producer_config())
    for ep in range(200):  # 20 new names an episode, 4,000 in all
        lg.log_episode(ep, float(ep), **{f"layer{ep}_k{k}_grad_norm": ep + k / 100 for k in range(20)})
    lg.close()  # default settings
    assert _warnings(caplog) == []
    assert not (tmp_path / f"{lg.run_id}.spool").exists()
    run = f"run_id = '{lg.run_id}'"
    assert collector.scalar(f"SELECT count(*) FROM episodes WHERE {run}") == 200
    # The first names became columns, up to the cap; the rest went to the long scalars table.
    custom = collector.scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'episodes' "
        "AND column_name LIKE 'layer%'"
    )
    assert custom == min(2000, MAX_CUSTOM_COLUMNS)
    assert collector.scalar(f"SELECT layer0_k3_grad_norm FROM episodes WHERE {run} AND episode = 0") == 0.03
    last = collector.scalar(
        f"SELECT value FROM scalars WHERE {run} AND name = 'layer199_k3_grad_norm' AND step = 199"
    )
    assert last == (199.03 if custom < 2000 else None)
    if custom < 2000:
        spilled = collector.scalar(f"SELECT count(DISTINCT name) FROM scalars WHERE {run}")
        assert spilled == 200 * 20 - custom  # every name past the cap, none lost
        assert collector.scalar(f"SELECT count(*) FROM episodes WHERE {run} AND extra IS NOT NULL") == 0
        assert collector.log().count("the most it takes") == 1

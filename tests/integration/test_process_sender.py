"""The process sender: a shipper process fed through shared memory, with real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import ROOT, CollectorProcess, run_cli, wait_for
from traindash.config import ConfigError, ProducerConfig
from traindash.producer import MetricsLogger

LOG_THEN_DIE = r"""
import os, signal, sys
from traindash.producer import MetricsLogger
lg = MetricsLogger("doomed", output_dir=sys.argv[1], sender="process")
for i in range(1, 3001):
    lg.log_episode(i, 1.0)
    if i % 10 == 0:
        lg.log_model_metrics(0.5, q_values=[1.0, 2.0])
print(lg.run_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_trainer_sigkill_loses_nothing_it_logged(collector: CollectorProcess, tmp_path) -> None:
    # The records are in shared memory the moment log_episode returns; the shipper sees
    # the training process vanish and ships all of them.
    proc = subprocess.run(
        [sys.executable, "-c", LOG_THEN_DIE, str(tmp_path)],
        env=collector.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    wait_for(
        lambda: collector.scalar("SELECT count(*) FROM episodes") == 3000,
        20,
        "all 3,000 episodes of the killed trainer",
    )
    row = collector.query(
        "SELECT count(DISTINCT seq) AS d, min(episode) AS lo, max(episode) AS hi FROM episodes"
    ).to_pylist()[0]
    assert row == {"d": 3000, "lo": 1, "hi": 3000}
    assert collector.scalar("SELECT count(*) FROM model_metrics") == 300
    # No end record: the run did not finish, and the collector will call it lost.
    assert collector.scalar(f"SELECT status FROM runs WHERE run_id = '{run_id}'") != "finished"


def test_a_killed_shipper_is_replaced_and_nothing_is_lost(
    stopped_collector: CollectorProcess, tmp_path
) -> None:
    # With no collector, the shipper holds 1,000 sent and unacknowledged records when it
    # is killed. They are in its spool file (written before each send) and the ring keeps
    # what it had not spooled, so the next shipper re-sends them with the same seqs.
    c = stopped_collector
    lg = MetricsLogger(
        "respawn",
        output_dir=str(tmp_path),
        sender="process",
        config=c.producer_config(resend_after=0.5),
        system_metrics_interval=0,  # the seqs below are the episodes' alone
    )
    for i in range(1, 1001):
        lg.log_episode(i, 1.0)
    first = lg._sender.proc  # type: ignore[union-attr]
    spool = tmp_path / f"{lg.run_id}.spool"
    wait_for(
        lambda: spool.exists() and spool.stat().st_size > 1000 * 72, 20, "the shipper to spool what it sent"
    )
    first.kill()
    first.wait(10)
    c.start()
    for i in range(1001, 2001):
        lg.log_episode(i, 2.0)
    assert lg.flush(timeout=30)  # starts the new shipper, which re-sends the spool
    assert lg._sender.restarts == 1  # type: ignore[union-attr]
    lg.close()
    rows = c.query(
        "SELECT count(*) AS n, count(DISTINCT seq) AS s, count(DISTINCT episode) AS e, "
        "max(seq) AS top FROM episodes"
    ).to_pylist()[0]
    assert rows == {"n": 2000, "s": 2000, "e": 2000, "top": 2001}  # seq 1 is the run's start
    assert c.scalar("SELECT status FROM runs") == "finished"
    assert not spool.exists()


# The shipper of the next test: the real one, which also notes every spool check it makes
# (file size before and after, bytes and batches still unacknowledged) in a file.
RECORDING_SHIPPER = r"""
import json, sys
from traindash.producer import shipper

notes = open(NOTES, "a", buffering=1)
read_acks = shipper.Shipper._read_acks

def noted(self, sub, now):
    checked_at, before = self._compacted_at, self.spool.size()
    read_acks(self, sub, now)
    if self._compacted_at != checked_at:
        unacked = sum(e.size for e in self.unacked.values())
        notes.write(json.dumps([before, self.spool.size(), unacked, len(self.unacked)]) + "\n")

shipper.Shipper._read_acks = noted
sys.exit(shipper.main(sys.argv))
"""
COMPACT_BYTES = 256 * 1024
# Records the trainer lets wait for an ack before it waits too: acks then keep flowing
# whatever the collector's speed on this machine, and something is always in flight.
MAX_UNACKED, RESUME_AT = 20_000, 10_000


def test_the_spool_written_ahead_is_cut_back_while_acks_flow(
    collector: CollectorProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traindash.producer import shipper_client

    notes = tmp_path / "spool-checks.jsonl"
    monkeypatch.setattr(shipper_client, "SPOOL_COMPACT_BYTES", COMPACT_BYTES)
    monkeypatch.setattr(shipper_client, "_ENTRY", f"NOTES = {str(notes)!r}\n" + RECORDING_SHIPPER)
    lg = MetricsLogger(
        "ahead", output_dir=str(tmp_path), sender="process", config=collector.producer_config()
    )
    spool = tmp_path / f"{lg.run_id}.spool"

    def checks() -> list[tuple[int, int, int, int]]:
        lines = notes.read_text().splitlines() if notes.exists() else []
        return [tuple(json.loads(line)) for line in lines if line.endswith("]")]

    def cut_back() -> int:
        # a rewrite, not the truncation that follows a full ack: records still unacknowledged
        return sum(1 for before, after, _u, count in checks() if after < before and count > 0)

    # Log until the shipper has cut its file back three times, pausing whenever the
    # collector is MAX_UNACKED behind: measured against the acks the shipper sees, not
    # against how fast this machine happens to be right now.
    n, biggest = 0, 0
    deadline = time.monotonic() + 90
    while cut_back() < 3:
        assert time.monotonic() < deadline, f"no cut-back in 90 s: {checks()[-5:]}"
        for _ in range(2000):
            n += 1
            lg.log_episode(n, 1.0)
        biggest = max(biggest, spool.stat().st_size if spool.exists() else 0)
        if lg._sender.pending > MAX_UNACKED:  # type: ignore[union-attr]
            # Polled often: the collector must not catch up completely (an empty file
            # would start the count again).
            wait_for(lambda: lg._sender.pending <= RESUME_AT, 60, "acks", 0.001)  # type: ignore[union-attr]
    lg.close()
    assert collector.scalar("SELECT count(*) FROM episodes") == n
    assert not spool.exists()
    assert biggest > 0  # each batch was in the file before it was sent
    # After every check the file holds at most twice what is still unacknowledged (plus each
    # batch's length prefix), or less than the size at which cutting starts: the part
    # already acknowledged never outgrows the part that is not.
    for before, after, unacked, count in checks():
        assert after <= max(COMPACT_BYTES, 2 * unacked + 4 * count), (before, after, unacked, count)


CTRL_C = r"""
import sys, time
from traindash.producer import MetricsLogger
with MetricsLogger("interrupted", output_dir=sys.argv[1], sender="process") as lg:
    i = 0
    while True:
        i += 1
        lg.log_episode(i, 1.0)
        if i == 2000:
            print("ready", flush=True)
        if i > 2000:
            time.sleep(0.001)
"""


def test_ctrl_c_in_the_terminal_does_not_stop_the_shipper_early(
    collector: CollectorProcess, tmp_path
) -> None:
    # Ctrl-C signals the whole process group: the shipper must outlive the trainer's
    # KeyboardInterrupt long enough to ship the run's end.
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C, str(tmp_path)],
        env=collector.env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"  # type: ignore[union-attr]
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert "KeyboardInterrupt" in err
    assert collector.scalar("SELECT status FROM runs") == "crashed"
    row = collector.query("SELECT count(*) AS n, max(episode) AS hi FROM episodes").to_pylist()[0]
    assert row["n"] == row["hi"] >= 2000


def test_sender_is_chosen_by_config_and_checked(
    td_env: CollectorProcess, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRAINDASH_SENDER", "process")
    assert ProducerConfig.resolve(env=os.environ).sender == "process"
    monkeypatch.setenv("TRAINDASH_SENDER", "fork")
    with pytest.raises(ConfigError, match="sender 'fork' is not one of thread, process"):
        ProducerConfig.resolve(env=os.environ)
    with pytest.raises(ValueError, match="sender must be 'thread' or 'process'"):
        MetricsLogger("x", output_dir=str(tmp_path), sender="fork", config=ProducerConfig())


def test_demo_trainers_run_on_the_process_sender(collector: CollectorProcess, tmp_path: Path) -> None:
    env = dict(collector.env, TRAINDASH_SENDER="process")
    res = run_cli(
        "demo", "--trainers", "2", "--episodes", "500", "--interval", "0", env=env, cwd=tmp_path, timeout=90
    )
    assert res.returncode == 0, res.stdout + res.stderr
    rows = collector.query(
        "SELECT run_id, count(*) AS n, count(DISTINCT seq) AS s FROM episodes GROUP BY run_id"
    ).to_pylist()
    assert len(rows) == 2 and all(r["n"] == r["s"] == 500 for r in rows)
    assert collector.scalar("SELECT count(*) FROM runs WHERE status = 'finished'") == 2


def test_a_shipper_that_cannot_run_is_a_clear_error_not_a_hang(
    tmp_path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from traindash.producer import shipper_client

    monkeypatch.setattr(shipper_client, "_ENTRY", "import sys; sys.exit(3)")
    lg = MetricsLogger("broken", output_dir=str(tmp_path), sender="process", config=ProducerConfig())
    lg.log_episode(1, 1.0)  # into shared memory: nothing to wait for yet
    with pytest.raises(shipper_client.ShipperGone):
        lg.get_statistics()
    lg.close()  # does not raise or hang; says what was lost
    # the run's start record, the episode and the run's end
    assert "could not stop the shipper" in caplog.text and "the 3 records" in caplog.text
    assert 1 <= lg._sender.restarts <= shipper_client.MAX_RESTARTS  # type: ignore[union-attr]


FORKS = r"""
import os, sys
from traindash.producer import MetricsLogger
from traindash.producer.shipper_client import ShipperGone
lg = MetricsLogger("forks", output_dir=sys.argv[1], sender="process")
for i in range(1, 101):
    lg.log_episode(i, 1.0)
pid = os.fork()
if pid == 0:  # the child: its copy must leave the parent's run alone
    for i in range(1000, 1050):
        lg.log_episode(i, 9.0)
    try:
        lg.get_statistics()
    except ShipperGone as exc:
        print("child:", exc, flush=True)
    lg.close()
    sys.exit(0)  # runs atexit, which would close the logger again
os.waitpid(pid, 0)
for i in range(101, 201):
    lg.log_episode(i, 1.0)
print("parent total", lg.get_statistics()["total_episodes"], flush=True)
lg.close()
"""


def test_a_forked_child_leaves_the_parents_run_alone(collector: CollectorProcess, tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", FORKS, str(tmp_path)],
        env=collector.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "a process forked from it cannot use its logger" in proc.stdout
    assert "records logged here are dropped" in proc.stderr
    assert "parent total 200" in proc.stdout
    row = collector.query(
        "SELECT count(*) AS n, count(DISTINCT seq) AS s, min(episode) AS lo, max(episode) AS hi FROM episodes"
    ).to_pylist()[0]
    assert row == {"n": 200, "s": 200, "lo": 1, "hi": 200}
    assert collector.scalar("SELECT status FROM runs") == "finished"

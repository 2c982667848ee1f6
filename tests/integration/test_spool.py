"""Nothing lost without a collector: the spool, resume by run_id, `traindash replay`."""

from __future__ import annotations

import json

import pytest

import traindash.producer.snapshot as snapshot_module
from tests.harness import CollectorProcess, run_cli, wait_for
from traindash.producer import MetricsLogger


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_no_collector_spools_then_replay_delivers_exactly_once(
    stopped_collector: CollectorProcess, tmp_path, sender: str
) -> None:
    c = stopped_collector
    out = tmp_path / "logs"
    lg = MetricsLogger("offline", output_dir=str(out), config=c.producer_config(), sender=sender)
    for i in range(5000):
        lg.log_episode(i, float(i))
    lg.close(timeout=0.2)
    spool = out / f"{lg.run_id}.spool"
    assert spool.stat().st_size > 0
    copy = tmp_path / "copy" / spool.name
    copy.parent.mkdir()
    copy.write_bytes(spool.read_bytes())
    c.start()
    res = run_cli("replay", str(spool), "--timeout", "30", env=c.env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert c.scalar("SELECT count(*) FROM episodes") == 5000
    assert c.scalar("SELECT status FROM runs") == "finished"
    assert not spool.exists()  # everything acknowledged: nothing left to re-send
    again = run_cli("replay", str(copy), "--timeout", "30", env=c.env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert c.scalar("SELECT count(*) FROM episodes") == 5000


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_resume_with_same_run_id_resends_and_continues(
    stopped_collector: CollectorProcess, tmp_path, sender: str
) -> None:
    c = stopped_collector
    out = str(tmp_path / "logs")
    first = MetricsLogger("resume", output_dir=out, config=c.producer_config(), sender=sender)
    for i in range(300):
        first.log_episode(i, 1.0)
    first.close(timeout=0.2)
    c.start()
    second = MetricsLogger(
        "resume", output_dir=out, run_id=first.run_id, sender=sender, config=c.producer_config()
    )
    for i in range(300, 600):
        second.log_episode(i, 2.0)
    assert second.flush(timeout=30)
    second.close()
    rows = c.query(
        "SELECT count(*) AS n, count(DISTINCT episode) AS e, count(DISTINCT seq) AS s FROM episodes"
    ).to_pylist()[0]
    assert rows == {"n": 600, "e": 600, "s": 600}
    assert c.scalar("SELECT count(*) FROM runs") == 1


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_auto_save_writes_a_snapshot_off_the_training_thread(
    collector: CollectorProcess, tmp_path, monkeypatch: pytest.MonkeyPatch, sender: str
) -> None:
    monkeypatch.setattr(snapshot_module, "AUTO_SAVE_MIN_INTERVAL", 0.0)
    out = tmp_path / "logs"
    lg = MetricsLogger(
        "autosave",
        output_dir=str(out),
        auto_save_interval=20,
        sender=sender,
        config=collector.producer_config(),
    )
    for i in range(100):
        lg.log_episode(i, float(i))
    path = out / f"autosave_{lg.run_id}.json"
    wait_for(path.exists, 20, "the auto-saved snapshot")
    lg.close()
    doc = json.loads(path.read_text())
    assert doc["run_id"] == lg.run_id and doc["episodes"]

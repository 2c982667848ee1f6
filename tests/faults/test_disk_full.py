"""Disk full at the collector: stop acknowledging, keep running, resume when space returns."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from tests.harness import CollectorProcess, free_endpoints, wait_for
from traindash.producer import MetricsLogger

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_stops_acks_then_everything_arrives(small_disk: Path, tmp_path: Path) -> None:
    c = CollectorProcess(
        db=small_disk / "td.duckdb", endpoints=free_endpoints(), log_path=tmp_path / "collector.log"
    )
    filler = small_disk / "filler"
    try:
        c.start()
        free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
        filler.write_bytes(b"\0" * (free - 1_500_000))
        lg = MetricsLogger(
            "full",
            output_dir=str(tmp_path / "logs"),
            config=c.producer_config(resend_after=0.5, close_timeout=60),
        )
        # Values that do not compress: DuckDB writes a large insert to the file compressed,
        # and 200,000 rows of counters and constants fit in the 1.5 MB left.
        rng = random.Random(7)
        for i in range(200_000):
            lg.log_episode(i, rng.random(), custom=rng.random(), other=rng.random())
        wait_for(lambda: "commit failed" in c.log(), 60, "a commit to fail on the full disk")
        assert lg.flush(timeout=1) is False
        assert c.answers(), "the collector stopped serving while the disk was full"
        filler.unlink()
        assert lg.flush(timeout=90), "records not acknowledged after space came back"
        lg.close()
        assert c.scalar("SELECT count(*) FROM episodes") == 200_000
        assert c.scalar("SELECT count(DISTINCT episode) FROM episodes") == 200_000
    finally:
        c.kill()

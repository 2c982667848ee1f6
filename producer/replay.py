"""Re-send a spool file to the collector (``traindash replay``)."""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from pathlib import Path

from traindash import wire
from traindash.config import ProducerConfig
from traindash.producer.sender import Sender
from traindash.producer.spool import read_bodies
from traindash.producer.stats import RunStats


def replay(path: Path, config: ProducerConfig, timeout: float) -> tuple[int, int, int]:
    """Send every batch in ``path``; returns (batches, highest acked seq, highest seq)."""
    run_id = path.name.removesuffix(".spool")
    batches = 0
    for body in read_bodies(path):
        msg = wire.decode([wire.TOPIC_BATCH, body])
        if isinstance(msg, wire.Batch):
            run_id = msg.run_id
            batches += 1
    if not batches:
        return 0, 0, 0
    sender = Sender(run_id, config, deque(), RunStats(1), path.parent, socket.gethostname(), os.getpid())
    last = sender.last_seq
    sender.start()
    deadline = time.monotonic() + timeout
    while sender.acked < last and time.monotonic() < deadline and sender.is_alive():
        time.sleep(0.02)
    sender.stop(0.0)
    sender.join()
    return batches, sender.acked, last

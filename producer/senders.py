"""The kinds of sender a MetricsLogger can have, and how each one is opened.

``thread``: a :class:`~traindash.producer.sender.Sender` thread in the training process
reads a deque. ``process``: a shipper process reads a shared-memory ring
(:mod:`traindash.producer.shipper_client`). The table of them, ``SENDERS``, is in
:mod:`traindash.producer.logger`, beside the logger class each one needs.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from traindash.producer.ring import RingWriter
from traindash.producer.sender import Sender
from traindash.producer.shipper_client import ShipperClient, StatsProxy
from traindash.producer.stats import RunStats

if TYPE_CHECKING:
    from traindash.producer.logger import MetricsLogger

SenderParts = tuple["Sender | ShipperClient", "deque[Any] | RingWriter", "RunStats | StatsProxy"]


@dataclass(frozen=True)
class SenderKind:
    """How a MetricsLogger gets one kind of sender.

    ``open(logger, last_seq, history_size)`` starts nothing yet and returns the sender,
    the queue log calls append to, and the run's statistics. ``logger_class`` is the
    class ``MetricsLogger(...)`` makes for it (its ``log_episode`` suits the queue).
    ``auto_saves``: the sender writes the auto-save snapshots itself.
    """

    open: Callable[[MetricsLogger, int, int], SenderParts]
    logger_class: type[MetricsLogger]
    auto_saves: bool


def open_thread_sender(lg: MetricsLogger, last_seq: int, history_size: int) -> SenderParts:
    queue: deque[Any] = deque()
    stats = RunStats(history_size)
    sender = Sender(lg.stream_key, lg.config, queue, stats, lg.output_dir, lg.host, lg.pid, last_seq=last_seq)
    sender.on_doze = lg._sender_dozing
    return sender, queue, stats


def open_process_sender(lg: MetricsLogger, last_seq: int, history_size: int) -> SenderParts:
    if os.name != "posix":  # fd passing, memfd/mmap sharing and fork hooks
        raise ValueError("the process sender needs a POSIX system; use sender='thread'")
    client = ShipperClient(
        lg.stream_key,
        lg.config,
        lg.output_dir,
        lg.host,
        lg.pid,
        last_seq,
        experiment_name=lg.experiment_name,
        history_size=history_size,
        buffer_size=lg.buffer_size,
        auto_save_interval=lg.auto_save_interval,
    )
    return client, client.queue, StatsProxy(client)

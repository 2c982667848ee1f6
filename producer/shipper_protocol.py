"""What a training process and its shipper process say to each other.

The two talk over a socket pair (:class:`multiprocessing.connection.Connection`, pickled
messages). This is local to one host and one run, unlike :mod:`traindash.wire`, which
owns what crosses the network.

Trainer -> shipper:

* first, one :class:`Setup` (everything the shipper needs to run the run's sender);
* then requests, each a tuple whose first item is a :class:`Request`:
  ``(STOP, timeout)``, ``(FLUSH, timeout)``, ``(PENDING,)``,
  ``(STATS, method, args)`` with ``method`` one of :data:`STATS_METHODS`.

Shipper -> trainer: one answer per request except ``STOP``, each ``(Reply, value)``:
``(OK, value)`` or ``(ERROR, message)``. ``FLUSH`` is answered ``(OK, bool)`` once the
collector has acknowledged everything logged before it, or at its deadline. ``STOP`` is
answered once, when the shipper has finished: ``(OK, records still unacknowledged)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from traindash.config import ProducerConfig


class Request(str, Enum):
    """A request from the training process."""

    STOP = "stop"
    FLUSH = "flush"
    PENDING = "pending"
    STATS = "stats"


class Reply(str, Enum):
    """How the shipper answers a request."""

    OK = "ok"
    ERROR = "error"


# The RunStats methods a StatsProxy may call in the shipper.
STATS_METHODS = frozenset(
    {"recent_episodes", "window", "latest_episode", "best_record", "smoothed", "statistics", "clear_window"}
)


@dataclass(frozen=True)
class Setup:
    """The first message to a new shipper: the run it ships and how."""

    run_id: str
    config: ProducerConfig
    output_dir: Path
    host: str
    pid: int
    experiment_name: str
    history_size: int
    auto_save_interval: int
    buffer_size: int
    auto_save_min_interval: float
    spool_compact_bytes: int
    last_seq: int

"""Who runs next on the query workers: per-client queues, round robin, a reserved lane.

Pure bookkeeping with no I/O; the query server (``collector/queryserver.py``) feeds it the
requests it receives and asks it which one to start whenever a worker is free.

* Each client (a ROUTER identity) has one FIFO queue per lane, and at most one query of a
  queue runs at a time, so a client that sends twenty heavy queries holds one worker, not
  twenty, and its queue waits behind itself rather than in front of everyone else.
* Queues are served round robin: after a queue's query starts, that queue goes to the back.
* ``reserved`` workers are kept for the ``service`` lane (the dashboard's and alerts' own
  queries): console queries never run on more than ``workers - reserved`` at once.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

CONSOLE = "console"
SERVICE = "service"


class QueueFull(RuntimeError):
    """The client, or the server as a whole, has too many queries waiting."""


@dataclass(eq=False)
class Job:
    """One query request, from its arrival to its answer."""

    client: bytes
    rid: int | None
    lane: str
    sql: str
    max_rows: int
    received: float
    deadline: float
    limit_s: float
    by_client: bool  # the deadline is the client's own timeout, not the server's cap
    peer: str = "?"
    arrow_frame: bool = False  # the client takes the Arrow stream as a frame of its own
    envelope: list[bytes] = field(default_factory=list)
    started: float | None = None
    announced: bool = False  # a "queued" progress message went out
    cut: str | None = None  # why the server stopped it (set before interrupting)
    rss_at_start: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[bytes, str]:
        return (self.client, self.lane)

    def who(self) -> str:
        """The client, for logs: its address and a short form of its socket identity."""
        return f"{self.peer} #{self.client[-4:].hex()}"


class Scheduler:
    """Queued and running jobs; decides the next job for a free worker."""

    def __init__(
        self, workers: int, reserved: int, max_queued_per_client: int = 32, max_queued: int = 1024
    ) -> None:
        if not 0 <= reserved < workers:
            raise ValueError("reserved must be below workers")
        self.workers = workers
        self.reserved = reserved
        self.max_queued_per_client = max_queued_per_client
        self.max_queued = max_queued
        self._queues: OrderedDict[tuple[bytes, str], deque[Job]] = OrderedDict()
        self.running: set[Job] = set()
        self.queued = 0

    def submit(self, job: Job) -> int:
        """Queue a job; returns how many queries are ahead of it. Raises :class:`QueueFull`."""
        mine = sum(len(q) for (client, _), q in self._queues.items() if client == job.client)
        if mine >= self.max_queued_per_client:
            raise QueueFull(f"{mine} queries from your client are already waiting; wait for their answers")
        if self.queued >= self.max_queued:
            raise QueueFull(f"{self.queued} queries are already waiting at the collector")
        self._queues.setdefault(job.key, deque()).append(job)
        self.queued += 1
        return self.ahead(job)

    def ahead(self, job: Job) -> int:
        """Queries that round robin starts before ``job``: its own queue's, and as many
        of each other queue of its lane as are not behind it."""
        own = self._queues.get(job.key)
        if not own or job not in own:
            return 0
        position = own.index(job)
        others = sum(
            min(len(q), position + 1)
            for key, q in self._queues.items()
            if key != job.key and key[1] == job.lane
        )
        return position + others

    def _may_start(self, job: Job) -> bool:
        if len(self.running) >= self.workers:
            return False
        if any(r.key == job.key for r in self.running):
            return False
        if job.lane == SERVICE:
            return True
        console = sum(1 for r in self.running if r.lane != SERVICE)
        return console < self.workers - self.reserved

    def next(self) -> Job | None:
        """The next job to start (now marked running), or None when none may start."""
        for key in list(self._queues):
            queue = self._queues[key]
            job = queue[0]
            if not self._may_start(job):
                continue
            queue.popleft()
            self.queued -= 1
            if queue:
                self._queues.move_to_end(key)
            else:
                del self._queues[key]
            self.running.add(job)
            return job
        return None

    def done(self, job: Job) -> None:
        self.running.discard(job)

    def withdraw(self, client: bytes, rid: int | None = None) -> list[Job]:
        """Remove a client's queued jobs (only request ``rid`` when given)."""
        return self._remove(lambda j: j.client == client and (rid is None or j.rid == rid))

    def expired(self, now: float) -> list[Job]:
        """Remove and return queued jobs whose deadline has passed."""
        return self._remove(lambda j: j.deadline <= now)

    def drain(self) -> list[Job]:
        """Remove every queued job (shutdown)."""
        return self._remove(lambda j: True)

    def running_of(self, client: bytes, rid: int | None = None) -> list[Job]:
        return [j for j in self.running if j.client == client and (rid is None or j.rid == rid)]

    def _remove(self, match: Any) -> list[Job]:
        gone: list[Job] = []
        for key in list(self._queues):
            queue = self._queues[key]
            keep = deque(j for j in queue if not match(j))
            if len(keep) != len(queue):
                gone += [j for j in queue if match(j)]
                if keep:
                    self._queues[key] = keep
                else:
                    del self._queues[key]
        self.queued -= len(gone)
        return gone

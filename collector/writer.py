"""The collector's writer thread: DuckDB writes, one at a time, off the socket loop.

A commit can take seconds (a first batch that adds hundreds of columns, a slow disk, a
checkpoint). While it runs, the socket loop must go on answering heartbeats and sending
acks for what is already committed, or producers take a busy collector for a missing one.
DuckDB releases the GIL while it works, so the loop thread keeps running beside it.

One task at a time: the loop hands over a task only when the last one is done, and
touches the store itself only then (DuckDB's single writer, no locks needed). A finished
task wakes the loop through an inproc socket it polls with the others, and its
``on_done`` callback then runs on the loop thread, where the sockets live.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Callable
from typing import Any

import zmq

Done = Callable[[Any, BaseException | None], None]

_ids = itertools.count()


class Writer(threading.Thread):
    """Runs the collector's store tasks on a thread of its own."""

    def __init__(self, ctx: zmq.Context) -> None:
        super().__init__(name="traindash-writer", daemon=True)
        self._tasks: queue.SimpleQueue[tuple[Callable[[], Any], Done | None] | None] = queue.SimpleQueue()
        address = f"inproc://traindash-writer-{next(_ids)}"
        self.done = ctx.socket(zmq.PAIR)  # the loop's end: readable when a task finished
        self.done.setsockopt(zmq.LINGER, 0)
        self.done.bind(address)
        self._signal = ctx.socket(zmq.PAIR)  # used only by the writer thread once started
        self._signal.setsockopt(zmq.LINGER, 0)
        self._signal.connect(address)
        self._current: tuple[Callable[[], Any], Done | None] | None = None
        self._outcome: tuple[Any, BaseException | None] = (None, None)
        self.busy = False

    def submit(self, task: Callable[[], Any], on_done: Done | None = None) -> None:
        """Run ``task`` on the writer; ``on_done(result, error)`` later runs on the loop."""
        if self.busy:
            raise RuntimeError("the writer runs one task at a time")
        self.busy = True
        self._current = (task, on_done)
        self._tasks.put(self._current)

    def run(self) -> None:
        try:
            while (item := self._tasks.get()) is not None:
                task, _ = item
                try:
                    self._outcome = (task(), None)
                except BaseException as exc:  # handed to on_done on the loop thread
                    self._outcome = (None, exc)
                self._signal.send(b"")
        finally:
            self._signal.close()

    def collect(self, timeout_ms: int = 0) -> bool:
        """Finish the task if it is done (``on_done`` runs here); True when one was."""
        if not self.busy or not self.done.poll(timeout_ms):
            return False
        self.done.recv()
        self.busy = False
        assert self._current is not None
        _, on_done = self._current
        outcome, self._outcome, self._current = self._outcome, (None, None), None
        if on_done is not None:
            on_done(*outcome)
        elif outcome[1] is not None:
            raise outcome[1]
        return True

    def finish(self) -> None:
        """Wait for the running task (its ``on_done`` runs), then stop the thread."""
        while self.busy and self.is_alive():
            self.collect(timeout_ms=100)
        self._tasks.put(None)
        if self.is_alive():
            self.join()
        if not self._signal.closed:  # never started
            self._signal.close()
        self.done.close()

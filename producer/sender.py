"""The background half of a MetricsLogger: pack, publish, track acks, re-send, spool.

The training thread only appends tuples to a deque. This thread (or a ``get_*`` call that
needs fresh statistics) drains the deque under ``pack_lock``, assigns seqs, packs columnar
batches into an outbox, and publishes them. Every batch stays in ``unacked`` until the
collector's ack covers it; past ``max_unacked_bytes`` the oldest spill to the spool file.
What is re-sent, and when the collector is asked where it stands, is
:mod:`producer.recovery`: what the collector says it lacks, with probes that back off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from pathlib import Path

import zmq

from traindash import security, wire
from traindash.config import ProducerConfig
from traindash.producer.link import NOT_LISTENING, Link
from traindash.producer.packing import SYSTEM, pack
from traindash.producer.recovery import EARLY_PROBE, Pending, Recovery
from traindash.producer.spool import Spool, read_bodies, save_last_seq, spool_path
from traindash.producer.stats import RunStats
from traindash.producer.system import SystemSampler

log = logging.getLogger("traindash.producer")

# Until a collector has answered, the loop wakes this often (probes back off on their own).
EARLY_HEARTBEAT = EARLY_PROBE
# With no collector connected, close() gives up after this; a connected one is waited for.
NO_COLLECTOR_GRACE = 3.0
SNDHWM = 1000
# Acks are cumulative, so a batch asks for one only this often (or when something waits
# on it): each ack read is a GIL hand-off that a CPU-bound training thread pays for.
ACK_EVERY = 0.25
# The first system-metrics sample comes this soon (its rates need a baseline reading first).
FIRST_SAMPLE_AFTER = 1.0


_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class Wake:
    """A wake-up call for the sender: one C-level lock, no Python-level Condition.

    ``threading.Event`` runs a dozen Python calls per wait; the sender waits ten times a
    second with cold caches, and the training thread calls :meth:`set`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # already set
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep until :meth:`set` or ``timeout``; True when woken. Leaves it unset."""
        return self._lock.acquire(timeout=timeout)


class Sender(threading.Thread):
    """Owns the logger's sockets; everything here runs off the training thread."""

    def __init__(
        self,
        run_id: str,
        config: ProducerConfig,
        queue: deque,
        stats: RunStats,
        output_dir: Path,
        host: str,
        pid: int,
        last_seq: int = 0,
    ) -> None:
        super().__init__(name=f"traindash-sender-{run_id}", daemon=True)
        self.run_id = run_id
        self.config = config
        self.queue = queue
        self.stats = stats
        self.output_dir = output_dir
        self.host, self.pid = host, pid
        self.pack_lock = threading.Lock()
        self.wake = Wake()
        self.outbox: deque[tuple[int, int, bytes]] = deque()
        self.last_seq = last_seq
        self.acked = 0
        self.ack_seen = False
        self.unacked: OrderedDict[int, Pending] = OrderedDict()
        self.mem_bytes = 0
        self.spool = Spool(spool_path(output_dir, run_id))
        self.stop_deadline: float | None = None
        self.stop_started = 0.0
        self.collector_state = NOT_LISTENING
        self.last_progress = time.monotonic()
        self.sent_seq = last_seq  # the highest seq sent; what a probe tells the collector
        self.recovery = Recovery(self.last_progress, config.heartbeat_interval, config.resend_after)
        self.sent_at = 0.0
        self.ack_asked_at = 0.0
        self.want_ack = False  # set by flush(): someone waits for the collector's ack
        self.failures = 0
        self._warned: set[str] = set()
        self.on_packed: Callable[[], None] | None = None
        # Told when the loop dozes (nothing queued or in flight) and when it wakes: the
        # logger then wakes it on the next record (see MetricsLogger._wake_at).
        self.on_doze: Callable[[bool], None] | None = None
        self.system: SystemSampler | None = None  # made on this thread: NVML may take a while
        self.system_due = 0.0
        self._load_spool()

    # -- called from any thread -------------------------------------------------------
    def drain(self) -> None:
        """Pack everything queued into the outbox (safe from any thread)."""
        with self.pack_lock:
            queue, limit = self.queue, self.config.max_batch_rows
            while queue:
                n = min(len(queue), limit)
                rows = [queue.popleft() for _ in range(n)]
                first = self.last_seq + 1
                try:
                    sections = pack(rows, first)
                except Exception:  # a bug here must not take the trainer down
                    self._warn_once("pack", "could not pack %d records; they are dropped", n, exc_info=True)
                    continue
                self.last_seq += n
                self.stats.update(sections)
                frames = wire.encode(
                    wire.Batch(self.run_id, first, self.last_seq, tuple(sections), self._ask_ack())
                )
                self.outbox.append((first, self.last_seq, frames[1]))

    def _ask_ack(self) -> bool:
        now = time.monotonic()
        if (
            not self.ack_seen
            or self.want_ack
            or self.stop_deadline is not None
            or now - self.ack_asked_at >= ACK_EVERY
            or self.mem_bytes > self.config.max_unacked_bytes // 4
        ):
            self.ack_asked_at = now
            return True
        return False

    def stop(self, timeout: float) -> None:
        self.stop_started = time.monotonic()
        self.recovery.ask_soon(0.0)  # ask soon if the end goes missing
        self.stop_deadline = self.stop_started + timeout
        self.wake.set()

    def flush(self, timeout: float) -> bool:
        """Wait until the collector has acknowledged everything queued so far."""
        self.drain()
        return self.wait_acked(timeout)

    def wait_acked(self, timeout: float) -> bool:
        """Wait until the collector has acknowledged everything packed so far."""
        target = self.last_seq
        deadline = time.monotonic() + timeout
        while self.acked < target and time.monotonic() < deadline and self.is_alive():
            self.want_ack = True
            self.wake.set()  # send and read acks now, not at the next interval
            time.sleep(0.005)
        return self.acked >= target

    @property
    def spool_path(self) -> Path:
        return self.spool.path

    @property
    def pending(self) -> int:
        """Records logged but not yet acknowledged by the collector."""
        return max(0, self.last_seq - self.acked) + len(self.queue)

    # -- the thread -------------------------------------------------------------------
    def run(self) -> None:
        # One context (one ZeroMQ I/O thread) for every sender of the process: a process
        # with a hundred streams ran a hundred I/O threads. Never terminated here; each
        # sender closes its own sockets (pyzmq makes a new instance after a fork).
        ctx: zmq.Context = zmq.Context.instance()
        pub = ctx.socket(zmq.PUB)
        sub = ctx.socket(zmq.SUB)
        link: Link | None = None
        try:
            for sock in (pub, sub):
                sock.setsockopt(zmq.LINGER, 0)
                security.secure_client(sock, self.config.curve)
            pub.setsockopt(zmq.SNDHWM, SNDHWM)
            link = Link(pub, sub)  # before connecting, so no handshake goes unseen
            pub.connect(self.config.endpoints.ingest)
            sub.setsockopt(zmq.SUBSCRIBE, wire.ack_topic(self.run_id))
            sub.connect(self.config.endpoints.rows)
            self._loop(pub, sub, link)
        except Exception:
            self._warn_once("sender", "traindash sender stopped on an error", exc_info=True)
        finally:
            self._finish()
            if self.system is not None:
                self.system.close()
            if link is not None:
                link.close()
            pub.close()
            sub.close()

    def _loop(self, pub: zmq.Socket, sub: zmq.Socket, link: Link) -> None:
        cfg = self.config
        next_heartbeat = 0.0
        doze_until: float | None = None
        while True:
            wait = cfg.flush_interval if self.ack_seen else min(EARLY_HEARTBEAT, cfg.flush_interval)
            self._idle(wait, doze_until)
            now = time.monotonic()
            if link.poll(now):
                self.recovery.ask_soon(now)  # just connected
            self.collector_state = link.state
            self._read_acks(sub, now)
            self._sample_system(now)
            self.drain()
            # All the Python work of a wake-up comes first, and the sends last: each send
            # releases the GIL, and whatever runs after it is time a CPU-bound training
            # thread waits for the GIL to come back.
            out: list[list[bytes]] = []
            self._take_outbox(now, out)
            if self.on_packed is not None:
                self.on_packed()
            if self.sent_at > now - 0.5 * cfg.heartbeat_interval and self.ack_seen:
                # A batch goes out now; it carries the seq and marks the run alive.
                next_heartbeat = max(next_heartbeat, self.sent_at + cfg.heartbeat_interval)
            # Re-sent batches may not ask for an ack; the probe after them does.
            probe = self._resend(now, out) or self._probe_due(now)
            if probe or now >= next_heartbeat:
                self._heartbeat(now, out, probe)
                next_heartbeat = now + cfg.heartbeat_interval
            self.want_ack = False
            done = False
            if self.stop_deadline is not None:
                deadline = self.stop_deadline
                if not link.connected:
                    # Nobody has shaken hands (since close began, or since the link went
                    # down): a short grace, not the whole timeout.
                    deadline = min(deadline, max(self.stop_started, link.lost_at) + NO_COLLECTOR_GRACE)
                done = (not self.queue and not self.outbox and self.acked >= self.last_seq) or now >= deadline
            for frames in out:
                pub.send_multipart(frames)
            if done:
                return
            doze_until = self._doze_until(next_heartbeat, link)

    def _sample_system(self, now: float) -> None:
        """Queue a system-metrics sample of the training process when one is due."""
        interval = self.config.system_interval
        if interval <= 0 or now < self.system_due or self.stop_deadline is not None:
            return
        try:
            if self.system is None:
                # The first reading is a baseline; the first sample follows within a second.
                self.system = SystemSampler(self.pid, self.host)
                self.system_due = now + min(interval, FIRST_SAMPLE_AFTER)
                return
            # A fixed rate; a sample later than a whole interval starts the schedule again.
            self.system_due += interval
            if self.system_due <= now:
                self.system_due = now + interval
            for row in self.system.sample():
                self.queue.append((SYSTEM, row.pop("ts"), row))
        except Exception:  # never let a sampler bug stop the sender
            self.system_due = now + interval
            self._warn_once("system", "traindash: system metrics sampling failed", exc_info=True)

    def _idle(self, timeout: float, doze_until: float | None = None) -> None:
        """Between wake-ups: sleep until woken or ``timeout``; when dozing, until the next
        record, the next heartbeat or sample, whichever comes first."""
        if doze_until is None or self.on_doze is None:
            self.wake.wait(timeout)
            return
        self.on_doze(True)
        try:
            # A record queued before the logger saw the doze would not wake us: look again.
            woken = not self.queue and self.wake.wait(max(timeout, doze_until - time.monotonic()))
        finally:
            self.on_doze(False)
        if woken and self.queue and self.stop_deadline is None and not self.want_ack:
            # The first record after a quiet spell woke us: gather a batch for a flush
            # interval, as an awake sender does, rather than send records one by one.
            self.wake.wait(timeout)

    def _doze_until(self, next_heartbeat: float, link: Link) -> float | None:
        """When nothing is queued, waiting to go out or unacknowledged, the loop has nothing
        to do until the next heartbeat (or system sample): a thousand quiet streams in a
        fleet would otherwise wake ten thousand times a second for nothing."""
        if (
            self.queue
            or self.outbox
            or self.unacked
            or self.want_ack
            or self.stop_deadline is not None
            or not self.ack_seen
            or not link.connected
        ):
            return None
        if self.config.system_interval > 0:
            return min(next_heartbeat, self.system_due)
        return next_heartbeat

    def _probe_due(self, now: float) -> bool:
        """Whether to ask the collector where it stands (a heartbeat is always answered)."""
        if not self.recovery.due(now) or now - self.ack_asked_at < EARLY_HEARTBEAT / 2:
            return False  # the last probe (or a batch that asked for an ack) is recent
        if not self.ack_seen:
            return True
        if (self.want_ack or self.stop_deadline is not None) and self.acked < self.last_seq:
            return True  # someone waits
        return bool(self.unacked) and now - self.last_progress >= self.config.heartbeat_interval

    def _heartbeat(self, now: float, out: list[list[bytes]], probe: bool) -> None:
        """A heartbeat; a probe (one that someone waits on) also backs the next one off."""
        ts = time.time()
        self.recovery.sent(ts, self.sent_seq, now, probe)
        self.ack_asked_at = now
        out.append(wire.encode(wire.Heartbeat(self.run_id, self.sent_seq, ts, self.host, self.pid)))

    def _read_acks(self, sub: zmq.Socket, now: float) -> None:
        progressed = False
        # Asking ZMQ_EVENTS keeps the GIL, where a recv that finds nothing would release it
        # and raise: each release lets the training thread in and costs it a forced switch
        # to get the GIL back.
        while sub.get(_EVENTS) & _POLLIN:  # type: ignore[operator]  # EVENTS is an int option
            frames = sub.recv_multipart(zmq.NOBLOCK)
            try:
                msg = wire.decode(frames)
            except wire.WireError:
                continue
            if isinstance(msg, wire.Ack) and msg.run_id == self.run_id:
                self.ack_seen = True
                if msg.acked > self.acked:
                    self.acked = msg.acked
                    progressed = True
                self.recovery.answered(msg, now)
        if not progressed:
            return
        self.last_progress = now
        self.recovery.progressed(now)
        while self.unacked:
            first, entry = next(iter(self.unacked.items()))
            if entry.last > self.acked:
                break
            del self.unacked[first]
            if entry.body is not None:
                self.mem_bytes -= entry.size
        if not self.unacked:
            self.spool.truncate()

    def _take_outbox(self, now: float, out: list[list[bytes]]) -> None:
        """Move packed batches to ``out`` (to be sent) and into ``unacked``."""
        while self.outbox:
            self.sent_at = now
            first, last, body = self.outbox.popleft()
            self.sent_seq = max(self.sent_seq, last)
            offset = self._keep(body)
            out.append([wire.TOPIC_BATCH, body])
            self.unacked[first] = Pending(first, last, len(body), now, body=body, offset=offset)
            self.mem_bytes += len(body)
        if self.mem_bytes > self.config.max_unacked_bytes:
            self._spill()

    def _keep(self, body: bytes) -> int | None:
        """Before a batch goes out: its spool offset if it is written ahead (not here)."""
        return None

    def _spill(self) -> None:
        for entry in self.unacked.values():
            if self.mem_bytes <= self.config.max_unacked_bytes // 2:
                break
            if entry.body is not None:
                if entry.offset is None:
                    entry.offset = self.spool.append(entry.body)
                entry.body = None
                self.mem_bytes -= entry.size

    def _resend(self, now: float, out: list[list[bytes]]) -> bool:
        """Queue on ``out`` what the collector lacks; True if anything was."""
        entries = self.recovery.pick(self.unacked, self.acked, now, self.last_progress)
        for entry in entries:
            body = entry.body if entry.body is not None else self.spool.read(entry.offset or 0)
            out.append([wire.TOPIC_BATCH, body])
            entry.sent_at = now
        return bool(entries)

    def _load_spool(self) -> None:
        """Records a previous logger with this run_id left unacknowledged go out first."""
        path = self.spool.path
        if not path.exists():
            return
        bodies = []
        for body in read_bodies(path):
            try:
                msg = wire.decode([wire.TOPIC_BATCH, body])
            except wire.WireError:
                continue
            if isinstance(msg, wire.Batch) and msg.run_id == self.run_id:
                bodies.append((msg.first, msg.last, body))
        self.spool.truncate()
        for first, last, body in bodies:
            offset = self.spool.append(body)
            self.unacked[first] = Pending(first, last, len(body), 0.0, offset=offset)
            self.last_seq = max(self.last_seq, last)
        # The first answer to a probe says which of them the collector lacks.
        self.sent_seq = max(self.sent_seq, self.last_seq)

    def _finish(self) -> None:
        """Keep what is still unacknowledged in the spool for a resume or a replay."""
        try:
            self.drain()
            now = time.monotonic()
            for first, last, body in self.outbox:
                self.unacked[first] = Pending(first, last, len(body), now, body=body)
            self.outbox.clear()
            bodies = [
                e.body if e.body is not None else self.spool.read(e.offset or 0)
                for e in self.unacked.values()
            ]
            self.spool.truncate()
            for body in bodies:
                self.spool.append(body)
            self.spool.close(remove_if_empty=True)
            if self.last_seq:
                save_last_seq(self.output_dir, self.run_id, self.last_seq)
        except Exception:
            self._warn_once("finish", "could not write the spool for run %s", self.run_id, exc_info=True)

    def _warn_once(self, key: str, msg: str, *args: object, exc_info: bool = False) -> None:
        self.failures += 1
        if key not in self._warned:
            self._warned.add(key)
            log.warning(msg, *args, exc_info=exc_info)

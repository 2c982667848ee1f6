"""The alerts service: committed rows in, rules applied per run, alerts out to Slack/email.

It subscribes to every committed row on the collector's rows socket and evaluates the rows of
each sequencing key (a trainer run's only writer, or each stream ``run#stream`` of a
multi-writer run, with rule state per key) in seq order (:mod:`alerts.follow`), polls
``runs``/``streams`` through the query socket for stalled/lost trainers (per run) and for keys
it has fallen behind on, hands alerts to the :class:`~alerts.channels.Dispatcher` and records
each delivered one, with the channels it reached, through a role="alerts" MetricsLogger.

Nothing is lost across restarts (see docs/alerts.md, "Restarts"): every alert has a key
(run or stream, rule, the row that fired it) and is recorded after it is delivered; per key,
a watermark says up to which seq every alert is recorded. On start, and whenever a key's
committed rows (``acked_seq``) stay ahead of what arrived live (a dropped message,
a collector restart), the rows after the watermark are read back through the query socket
and evaluated in order, from rule state rebuilt from SQL (:mod:`alerts.history`); an alert
whose key is already stored is not raised again. Shutdown is a flag (SIGTERM/SIGINT) the
loop checks; a second signal skips the drain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from traindash import security, wire
from traindash.alerts import liveness
from traindash.alerts.channels import GAVE_UP, Dispatcher
from traindash.alerts.config import AlertsConfig
from traindash.alerts.follow import Row, RunTrack
from traindash.alerts.history import ENDED, History, RunInfo, clean_model_row
from traindash.alerts.record import AlertRecorder
from traindash.alerts.rules import Alert, RuleEngine
from traindash.alerts.system import build_channels
from traindash.query import QueryClient, QueryError
from traindash.shutdown import GracefulExit
from traindash.wire import RecordKind

log = logging.getLogger("traindash.alerts")

__all__ = ["AlertsService", "clean_model_row", "section_rows"]

POLL_MS = 100
MAX_MESSAGES_PER_TICK = 1000
CONNECT_WAIT = 5.0
# Process managers (honcho, systemd) allow a few seconds after SIGTERM: deliver what is
# queued within that; what is not delivered is not recorded, and the next start retries it.
DRAIN_TIMEOUT = 3.0
RECORD_CLOSE_TIMEOUT = 1.0
RCVHWM = 100_000
MARK_INTERVAL = 1.0
# A run whose committed rows stay ahead of the live feed this long is read back from SQL.
GAP_WAIT = 1.0
# On a consumer's first start, runs that began this recently are still read from their start
# (processes started together: trainers may log before the alerts process has looked).
FIRST_START_GRACE = 60.0
# Latest values and custom-rule streaks are rebuilt from this many episodes before a mark.
WARM_EPISODES = 20


def section_rows(section: wire.Section) -> list[dict[str, Any]]:
    """The rows of a section as dicts of plain values (``extra`` dicts are left out)."""
    cols = {
        k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in section.cols.items() if k != "extra"
    }
    return [{k: v[i] for k, v in cols.items()} for i in range(len(section))]


class AlertsService(GracefulExit):
    """Applies the rules to every trainer run the collector reports and delivers the alerts."""

    def __init__(self, config: AlertsConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.engine = RuleEngine(
            config.thresholds, config.cooldown_seconds, config.rules, config.new_best_min_episodes
        )
        self.recorder = AlertRecorder(
            config.endpoints, config.output_dir, require_collector=True, close_timeout=RECORD_CLOSE_TIMEOUT
        )
        self.channels = build_channels(config) if config.enabled else []
        self.dispatcher = Dispatcher(
            self.channels,
            self._delivered,
            storm_threshold=config.storm_threshold,
            batch_window=config.batch_window,
            max_attempts=config.max_attempts,
            retry_backoff=config.retry_backoff,
        )
        self.should_exit = False
        self.force_exit = False
        self.raised = 0
        self.tracks: dict[str, RunTrack] = {}
        self.sent: set[str] = set()  # keys raised by this process
        self.history: History | None = None
        self.started = False  # the start-up read of marks and runs is done
        self.first_start = False  # this consumer has no watermarks: follow from now
        self._lock = threading.Lock()  # inflight counts and the recorder's queue order
        self._query_warned = False
        self._since_us = 0  # when this consumer first started (its "*" watermark)
        self._warm = max([WARM_EPISODES, *(r.for_episodes for r in config.rules)])

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> None:
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        security.secure_client(sub)  # CURVE keys from TRAINDASH_CURVE_* when configured
        # Rule evaluation keeps up with normal traffic; a deep queue rides out bursts.
        sub.setsockopt(zmq.RCVHWM, RCVHWM)
        # Every kind: each seq of a run must arrive for its rows to be evaluated in order.
        sub.setsockopt(zmq.SUBSCRIBE, wire.rows_topic())
        client = QueryClient(self.config.endpoints.query, timeout=3.0, ctx=ctx, lane="service")
        self.history = History(client, self.config.consumer)
        try:
            self._connect(sub)
            self.recorder.start_run()
            channels = ", ".join(c.name for c in self.channels) or "none (alerts are only recorded)"
            log.info("alerts: following %s; channels: %s", self.config.endpoints.rows, channels)
            next_poll = next_mark = 0.0
            while not self.should_exit:
                if sub.poll(POLL_MS):
                    for _ in range(MAX_MESSAGES_PER_TICK):
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self.handle_frames(frames)
                now = time.monotonic()
                if now >= next_poll:
                    next_poll = now + self.config.status_poll_interval
                    self.poll()
                if now >= next_mark:
                    next_mark = now + MARK_INTERVAL
                    self.publish_marks()
        finally:
            sub.close(0)
            self._drain()
            self.publish_marks()
            client.close()
            ctx.term()
            self.recorder.close()
            log.info("alerts: stopped after raising %d alerts", self.raised)

    def _drain(self) -> None:
        """Deliver what is queued, up to DRAIN_TIMEOUT; a second signal cuts it short."""
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while not self.force_exit and time.monotonic() < deadline:
            if self.dispatcher.flush(0.2):
                break
        if not self.dispatcher.close(0.5):
            log.warning("alerts: gave up delivering some alerts at shutdown; the next start retries them")

    def _connect(self, sub: zmq.Socket) -> None:
        """Connect and wait (bounded) for the handshake, so rows published next are not missed."""
        monitor = sub.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            sub.connect(self.config.endpoints.rows)
            deadline = time.monotonic() + CONNECT_WAIT
            while time.monotonic() < deadline and not self.should_exit:
                if monitor.poll(100):
                    recv_monitor_message(monitor)
                    return
            log.warning(
                "alerts: no collector at %s yet; will follow it when it starts", self.config.endpoints.rows
            )
        finally:
            sub.disable_monitor()
            monitor.close(0)

    # -- the live feed ---------------------------------------------------------------------------
    def handle_frames(self, frames: list[bytes]) -> None:
        try:
            msg = wire.decode(frames)
        except wire.WireError as exc:
            log.warning("alerts: skipped a malformed message: %s", exc)
            return
        if isinstance(msg, wire.Rows):
            self.handle_rows(wire.stream_key(msg.run_id, msg.stream), msg.section)

    def handle_rows(self, key: str, section: wire.Section) -> None:
        """Committed rows of a sequencing key: a run id, or ``run#stream``."""
        track = self._track(key)
        if track.ignored:
            return
        for row in section_rows(section):
            track.add(int(row["seq"]), (section.kind, row))
        if self.started:
            self._advance(track)

    def _track(self, key: str) -> RunTrack:
        track = self.tracks.get(key)
        if track is None:
            track = self.tracks[key] = RunTrack(key)
            if self.started:  # a run that began after the start-up: from its first row
                track.start_at(0)
        return track

    def _advance(self, track: RunTrack) -> None:
        """Evaluate what follows ``evaluated`` without a hole; fill a hole that grew too big."""
        if track.evaluated is None:
            return
        try:
            if not track.ready and not self._make_ready(track):
                return
            for seq, row in track.take_contiguous():
                self._evaluate(track, seq, row)
            if track.full:
                self._catch_up_from_sql(track)
        except QueryError as exc:
            self._warn_query(exc)

    # -- reading back ----------------------------------------------------------------------------
    def poll(self) -> None:
        """Start up (once), then per run: liveness, and whether the live feed fell behind."""
        assert self.history is not None
        try:
            if not self.started:
                self._start_up()
            infos = self.history.runs()
            for info in infos:
                self._watch(info)
        except QueryError as exc:
            self._warn_query(exc)
            return
        self._query_warned = False

    def _warn_query(self, exc: Exception) -> None:
        if not self._query_warned:
            self._query_warned = True
            log.warning("alerts: cannot read from the collector (%s); will retry", exc)

    def _start_up(self) -> None:
        """Where each run begins: its watermark; on a consumer's first start, its end."""
        assert self.history is not None
        if not self.recorder.flush(2.0):  # earlier processes' unacknowledged alerts first
            raise QueryError("the collector did not acknowledge the alerts run yet")
        marks, self._since_us = self.history.marks()
        runs = self.history.runs()
        statuses = self.history.status_alerts()
        self.first_start = not marks and not self._since_us and not self.config.from_start
        for info in runs:
            track = self._track(info.key)
            if not info.trainer:
                track.ignored = True
                track.pending.clear()
                continue
            if info.key in marks:
                track.start_at(marks[info.key])
            elif self.first_start and (info.started_at or 0) < self.clock() - FIRST_START_GRACE:
                track.start_at(info.acked_seq)
                track.published = -1  # publish it, so the next start begins here too
            else:
                track.start_at(0)
            if info.stream is not None:
                continue  # liveness alerts are per run
            stored = statuses.get(info.run_id, [])
            old_stall = not stored and (info.last_seen_us or 0) < self._since_us
            liveness.seed(self.engine, track, info, stored, self.first_start or old_stall)
        for track in self.tracks.values():
            if track.evaluated is None:  # seen live, committed after the runs were read
                track.start_at(0)
        if not self._since_us:
            self.recorder.mark(self.config.consumer, {"*": 0})
        self.started = True
        behind = sum(1 for i in runs if i.trainer and i.acked_seq > (self.tracks[i.key].evaluated or 0))
        log.info(
            "alerts: %s; %d run(s) to read back",
            "first start, following from now" if self.first_start else "resuming from the watermarks",
            behind,
        )

    def _watch(self, info: RunInfo) -> None:
        track = self._track(info.key)
        if track.ignored:
            return
        if not info.trainer:
            track.ignored = True
            track.pending.clear()
            return
        if track.evaluated is None:
            track.start_at(0)
        assert track.evaluated is not None
        if info.stream is None:
            self._status(track, info)
        if info.acked_seq <= track.evaluated:
            track.behind = None
            return
        now = time.monotonic()
        if not track.ready or (track.behind is not None and now - track.behind[1] >= GAP_WAIT):
            self._catch_up(track, info)
        elif track.behind is None or track.evaluated >= track.behind[0]:
            track.behind = (info.acked_seq, now)

    def _make_ready(self, track: RunTrack) -> bool:
        assert self.history is not None and track.evaluated is not None
        info = self.history.run(track.key)
        if info is None:
            return False
        if not info.trainer:
            track.ignored = True
            track.pending.clear()
            return False
        self.history.rebuild(self.engine, info, track.evaluated, self._warm)
        track.recorded.update(self.history.recorded_keys(track.key, track.evaluated))
        track.ready = True
        return True

    def _catch_up_from_sql(self, track: RunTrack) -> None:
        assert self.history is not None
        info = self.history.run(track.key)
        if info is not None:
            self._catch_up(track, info)

    def _catch_up(self, track: RunTrack, info: RunInfo) -> None:
        """Evaluate, in seq order, every committed row after ``evaluated`` (SQL and live merged)."""
        assert self.history is not None and track.evaluated is not None
        if not track.ready and not self._make_ready(track):
            return
        start, target = track.evaluated, info.acked_seq
        log.info("alerts: reading back run %s, seq %d..%d", track.key, start + 1, target)
        ended = False
        while track.evaluated < target and not self.should_exit:
            rows, complete = self.history.rows(track.key, track.evaluated, target)
            for seq, kind, row in rows:
                track.pending.setdefault(seq, (kind, row))  # a row also seen live: evaluated once
            for seq, item in track.take_through(complete):
                ended = ended or item[0] is RecordKind.END
                self._evaluate(track, seq, item)
            track.evaluated = max(track.evaluated, complete)
        if track.evaluated < target:
            return  # stopping: the watermark says where the next start goes on
        if info.ended_at is not None and info.status in ENDED and not ended and target > start:
            # The run's end has no row in a table: it is its last record, at the committed seq.
            end = {
                "seq": target,
                "ts": info.ended_at,
                "status": info.status,
                "final_metrics": info.final_metrics,
            }
            self._evaluate(track, target, (RecordKind.END, end))
        track.behind = None
        for seq, item in track.take_contiguous():
            self._evaluate(track, seq, item)

    # -- evaluating ------------------------------------------------------------------------------
    def _evaluate(self, track: RunTrack, seq: int, item: Row) -> None:
        kind, row = item
        run_id, engine = track.key, self.engine  # rule state is per key
        ts = row.get("ts")
        now = float(ts) if isinstance(ts, (int, float)) else self.clock()  # replays decide alike
        if kind is RecordKind.EPISODE:
            alerts = engine.on_episode(run_id, row, now)
        elif kind is RecordKind.MODEL:
            alerts = engine.on_model(run_id, clean_model_row(row), now)
        elif kind is RecordKind.RUN:
            alerts = engine.on_run(run_id, row, now)
        elif kind is RecordKind.END:
            alerts = engine.on_end(run_id, row, now)
        elif kind is RecordKind.SYSTEM:
            alerts = engine.on_system(run_id, row, now)
        else:
            alerts = []
        for alert in alerts:
            self._raise(track, alert, str(seq), seq)
        assert track.evaluated is not None
        track.evaluated = max(track.evaluated, seq)

    def _raise(self, track: RunTrack, alert: Alert, marker: str, row_seq: int | None) -> Alert:
        keyed = track.keyed(alert, marker, row_seq)
        assert keyed.key is not None
        if keyed.key in track.recorded or keyed.key in self.sent:
            log.debug("alerts: %s was sent before", keyed.key)
            return keyed
        self.sent.add(keyed.key)
        if row_seq is not None:
            with self._lock:
                track.inflight[row_seq] += 1
        self.emit([keyed])
        return keyed

    def _status(self, track: RunTrack, info: RunInfo) -> None:
        st = self.engine.state(info.run_id)
        for alert, marker in liveness.changes(self.engine, track, info, self.clock()):
            keyed = self._raise(track, alert, marker, None)
            if alert.rule != "trainer_recovered":
                st.announced[alert.rule] = keyed

    def emit(self, alerts: list[Alert]) -> None:
        for alert in alerts:
            self.raised += 1
            log.info("alerts: %s %s for %s: %s", alert.level, alert.rule, alert.run_id, alert.message)
            if self.config.enabled:
                self.dispatcher.submit(alert)
            else:
                self._settled(alert)

    # -- recording and watermarks ------------------------------------------------------------------
    def _delivered(self, alert: Alert, reached: list[str], errors: dict[str, str]) -> None:
        """Called by a channel worker once every channel is done with ``alert``."""
        if any(e.endswith(GAVE_UP) for e in errors.values()):
            return  # not recorded: its watermark stays behind it and the next start retries it
        with self._lock:
            self.recorder.record(alert, reached, errors)
            self._settled(alert, locked=True)

    def _settled(self, alert: Alert, locked: bool = False) -> None:
        track = self.tracks.get(wire.stream_key(alert.run_id or "", alert.data.get("stream")))
        if track is None or alert.row_seq is None:
            return
        if not locked:
            with self._lock:
                self._settled(alert, locked=True)
            return
        track.inflight[alert.row_seq] -= 1
        if track.inflight[alert.row_seq] <= 0:
            del track.inflight[alert.row_seq]

    def publish_marks(self) -> None:
        """Queue each run's watermark where it moved (after the alerts it covers)."""
        if not self.started:
            return
        with self._lock:
            moved: dict[str, int] = {}
            for track in self.tracks.values():
                if track.ignored or track.evaluated is None:
                    continue
                safe = track.safe_mark()
                if safe > track.published:
                    moved[track.key] = track.published = safe
            if moved:
                self.recorder.mark(self.config.consumer, moved)

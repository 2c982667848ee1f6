"""The traindash wire format, version 1. This module is its only owner.

Every ZeroMQ message is two frames, ``[topic, body]``; ``body`` is a msgpack map that
always carries ``v`` (the format version) and ``k`` (a :class:`Kind`). The exceptions are a
``part`` and a ``result`` sent to a client that asked for ``arrow_frame``: ``[topic, body,
arrow]``.

Ingest socket (trainers PUB -> collector SUB), topics ``b"batch"`` and ``b"hb"``:

``batch``  ``{v, k, run, first, last, sections}`` records ``first..last`` of one run's
           stream, every seq in that range exactly once. ``sections`` is a list of
           ``{kind, cols}``: ``kind`` a :class:`RecordKind`, ``cols`` a map from field name
           to a column. Every section has the columns ``seq`` (int64) and ``ts`` (float64,
           Unix seconds). A column is ``["f8", bytes]`` (little-endian float64),
           ``["i8", bytes]`` (little-endian int64) or ``["obj", [values...]]`` (any msgpack
           value per row: strings, lists such as q_values, maps such as hyperparameters).
           A ``scalars`` section also carries ``names`` (a list of strings, any text such
           as ``losses/value_loss``): its columns are ``seq``, ``ts``, ``step`` (int64)
           and ``v0``, ``v1``, ... (float64), ``v{i}`` holding the values of ``names[i]``.
``hb``     ``{v, k, run, seq, ts, host, pid}``: a heartbeat; ``seq`` is the highest seq
           the producer has sent, so the collector can tell what it is missing.

Rows socket (collector PUB -> ui, alerts, producers):

``ack``    topic ``b"ack\\0" + run + b"\\0"``: ``{v, k, run, acked}``; every record of the
           run up to ``acked`` is committed to DuckDB. The answer to a heartbeat also has
           ``have`` and ``probe`` (that heartbeat's ``ts``): the collector holds every
           record up to ``have``. One connection keeps its order, so what the producer sent
           before that heartbeat above ``have`` was lost on the way: send it again.
``rows``   topic ``b"rows\\0" + kind + b"\\0" + run + b"\\0"``:
           ``{v, k, run, kind, cols[, stream]}``, rows just committed, in the batch column
           format. ``stream`` names the writer of a multi-stream run: its seqs are its own.

Query socket (DEALER/REQ -> collector ROUTER):

``query``  ``{v, k, sql, max_rows[, id, lane, timeout, arrow_frame]}``; answered by ``result``
           ``{v, k, arrow, truncated[, id]}`` (``arrow``: an Arrow IPC stream) or ``error``
           ``{v, k, message[, id]}``. A query with ``id`` and ``arrow_frame: true`` is
           answered by any number of ``part`` messages ``[b"part", {v, k, id}, arrow]`` and
           then ``[b"result", {v, k, truncated, id, arrow_frame: true, parts}, arrow]`` (or an
           ``error``): each ``arrow`` frame is a whole Arrow IPC stream of the next rows, the
           result's rows are those of the ``parts`` parts and then its own. The collector
           sends each part as soon as it is read, and both ends pass the frames without
           copying them (a msgpack ``bin`` is copied when packed and again when unpacked).
           A client that gets an ``error`` drops the parts. ``id`` (the client's request
           number) marks a client
           that knows ``progress`` and ``cancel``; ``lane`` is ``console`` (default) or
           ``service`` (the dashboard's and alerts' own queries, which keep a worker a
           console query cannot take); ``timeout`` (seconds) is how long the client waits:
           the collector interrupts the query once it has passed.
``progress`` ``{v, k, id, ahead, started}``: sent at once to a client that gave an ``id``,
           then again when a queued query starts; ``ahead`` is how many queries wait before
           it. A client that timed out can tell "busy" from "nobody there".
``cancel`` ``{v, k, id}``: the client gave up on query ``id``; it is withdrawn or
           interrupted. Not answered. Sent only to a collector that sent ``progress``.
``stats``  ``{v, k, what[, id]}``: the query server's counters (``what`` = ``counters``)
           or its settings and load (``server``), answered by ``result``.
``manage`` ``{v, k, action, runs[, id]}``: ``archive`` or ``delete`` finished runs (the only
           writes the query socket takes; the collector's writer carries them out);
           answered by ``result`` (a table of the ``run_id``s changed) or ``error``.

The fields in brackets, the third frame and the kinds ``progress``, ``cancel``, ``stats`` and
``part`` came later within
format 1: an older peer ignores the fields it does not know, and the new kinds are only sent
to a peer that showed it knows them (a request with ``id``; a reply with ``progress``).

Record kinds: ``run`` (start: experiment, name, host, pid, hyperparameters, tags,
description, objective), ``episode``, ``model`` (loss, q summary and values, gradients),
``scalars`` (named values at a step, one record per ``log()`` call), ``summary`` (a
TensorBoard histogram or text at a step), ``end`` (status, final metrics), ``alert`` and
``mark`` (an alerts consumer's watermarks: consumer, run_ids, evaluated_seqs). Fields a
reader does not know are kept, not dropped.

A ``system`` record is one row of a CPU/memory/GPU sample (host, pid, gpu_index, gpu_uuid
and figures with their units in their names; see docs/system.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

import msgpack
import numpy as np

FORMAT_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_RUN_ID_LEN = 128
MAX_NAME_LEN = 63
MAX_SEQ = 2**63 - 1
MAX_SCALAR_NAME_LEN = 255
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

TOPIC_BATCH = b"batch"
TOPIC_HEARTBEAT = b"hb"
TOPIC_ACK = b"ack\0"
TOPIC_ROWS = b"rows\0"

Column = np.ndarray | list


class WireError(ValueError):
    """A message that does not follow the wire format; ``reason`` is a short tag."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class Kind(str, Enum):
    BATCH = "batch"
    HEARTBEAT = "hb"
    ACK = "ack"
    ROWS = "rows"
    QUERY = "query"
    RESULT = "result"
    ERROR = "error"
    MANAGE = "manage"
    PROGRESS = "progress"
    CANCEL = "cancel"
    STATS = "stats"
    PART = "part"


MANAGE_ACTIONS = ("archive", "delete")
LANES = ("console", "service")
STATS_WHAT = ("counters", "server")


class RecordKind(str, Enum):
    RUN = "run"
    EPISODE = "episode"
    MODEL = "model"
    END = "end"
    ALERT = "alert"
    SCALARS = "scalars"
    SUMMARY = "summary"
    MARK = "mark"
    SYSTEM = "system"


@dataclass(frozen=True)
class Section:
    """Rows of one record kind; ``cols`` always holds ``seq`` and ``ts``.

    ``names`` only in a ``scalars`` section: the name of column ``v{i}`` is ``names[i]``.
    """

    kind: RecordKind
    cols: dict[str, Column]
    names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.cols["seq"])


@dataclass(frozen=True)
class Batch:
    """Records ``first..last`` of a run, each seq exactly once across the sections.

    ``ack`` False asks the collector not to acknowledge this batch on its own: acks are
    cumulative, so a producer asks for one every so often rather than for every batch.
    """

    run_id: str
    first: int
    last: int
    sections: tuple[Section, ...]
    ack: bool = True


@dataclass(frozen=True)
class Heartbeat:
    run_id: str
    seq: int
    ts: float
    host: str = ""
    pid: int = 0


@dataclass(frozen=True)
class Ack:
    """``acked``: committed up to here. ``have``/``probe``: see the module docstring."""

    run_id: str
    acked: int
    have: int | None = None
    probe: float | None = None


@dataclass(frozen=True)
class Rows:
    """Committed rows of ``run_id``; ``stream``: their writer when the run has several
    (seqs are per stream then), None for a run's only writer."""

    run_id: str
    section: Section
    stream: str | None = None


@dataclass(frozen=True)
class Query:
    """Read-only SQL; ``id``, ``lane`` and ``timeout`` are sent only when ``id`` is set."""

    sql: str
    max_rows: int = 100_000
    id: int | None = None
    lane: str = "console"
    timeout: float | None = None
    arrow_frame: bool = False  # the client takes the result's Arrow stream as its own frame


@dataclass(frozen=True)
class Manage:
    action: str
    run_ids: tuple[str, ...]
    id: int | None = None


@dataclass(frozen=True)
class Result:
    """An Arrow IPC stream; ``arrow_frame`` sends it as a third frame after ``parts``
    :class:`Part` messages (see the module docstring)."""

    arrow: bytes | memoryview
    truncated: bool = False
    id: int | None = None
    arrow_frame: bool = False
    parts: int = 0


@dataclass(frozen=True)
class Part:
    """Some rows of a result still being read: a whole Arrow IPC stream, in its own frame."""

    id: int
    arrow: bytes | memoryview


@dataclass(frozen=True)
class Error:
    message: str
    id: int | None = None


@dataclass(frozen=True)
class Progress:
    """Query ``id`` is queued behind ``ahead`` others, or has ``started``."""

    id: int
    ahead: int
    started: bool


@dataclass(frozen=True)
class Cancel:
    id: int


@dataclass(frozen=True)
class Stats:
    what: str = "counters"
    id: int | None = None


Message = Batch | Heartbeat | Ack | Rows | Query | Result | Error | Manage | Progress | Cancel | Stats | Part


@dataclass(frozen=True)
class Limits:
    """Bounds applied while unpacking untrusted bytes."""

    max_bin_len: int = MAX_MESSAGE_BYTES
    max_str_len: int = 1024 * 1024
    max_array_len: int = 1_000_000
    max_map_len: int = 10_000


DEFAULT_LIMITS = Limits()


STREAM_SEP = "#"


def stream_key(run_id: str, stream: str | None) -> str:
    """The sequencing key of one writer of a run: the run id itself, or ``run#stream``.

    Seqs, acks and spools are per key, so exactly-once holds per stream; the collector
    stores the rows under ``run_id`` with the ``stream`` column set.
    """
    return run_id if not stream else f"{run_id}{STREAM_SEP}{stream}"


def split_stream_key(key: str) -> tuple[str, str | None]:
    """``(run_id, stream)`` of a sequencing key; ``stream`` is None for a one-stream run."""
    run, sep, stream = key.partition(STREAM_SEP)
    return (run, stream) if sep and run and stream else (key, None)


def ack_topic(run_id: str) -> bytes:
    return TOPIC_ACK + run_id.encode() + b"\0"


def rows_topic(kind: RecordKind | None = None, run_id: str | None = None) -> bytes:
    """Topic (or subscription prefix) for committed rows."""
    topic = TOPIC_ROWS
    if kind is not None:
        topic += kind.value.encode() + b"\0"
        if run_id is not None:
            topic += run_id.encode() + b"\0"
    return topic


def _pack_col(values: Column) -> list:
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "iub":
            return ["i8", np.ascontiguousarray(values, dtype="<i8").tobytes()]
        return ["f8", np.ascontiguousarray(values, dtype="<f8").tobytes()]
    return ["obj", list(values)]


def _pack_section(section: Section) -> dict:
    body: dict[str, Any] = {
        "kind": section.kind.value,
        "cols": {k: _pack_col(v) for k, v in section.cols.items()},
    }
    if section.kind is RecordKind.SCALARS:
        body["names"] = list(section.names)
    return body


def encode(msg: Message) -> list[bytes]:
    """Frames ``[topic, body]`` for a message."""
    body: dict[str, Any] = {"v": FORMAT_VERSION}
    if isinstance(msg, Batch):
        topic = TOPIC_BATCH
        body.update(
            k=Kind.BATCH.value,
            run=msg.run_id,
            first=msg.first,
            last=msg.last,
            sections=[_pack_section(s) for s in msg.sections],
        )
        if not msg.ack:
            body["ack"] = False
    elif isinstance(msg, Heartbeat):
        topic = TOPIC_HEARTBEAT
        body.update(
            k=Kind.HEARTBEAT.value, run=msg.run_id, seq=msg.seq, ts=msg.ts, host=msg.host, pid=msg.pid
        )
    elif isinstance(msg, Ack):
        topic = ack_topic(msg.run_id)
        body.update(k=Kind.ACK.value, run=msg.run_id, acked=msg.acked)
        if msg.probe is not None:
            body.update(have=msg.have, probe=msg.probe)
    elif isinstance(msg, Rows):
        topic = rows_topic(msg.section.kind, msg.run_id)
        body.update(k=Kind.ROWS.value, run=msg.run_id, **_pack_section(msg.section))
        if msg.stream is not None:
            body["stream"] = msg.stream
    elif isinstance(msg, Query):
        topic = b"query"
        body.update(k=Kind.QUERY.value, sql=msg.sql, max_rows=msg.max_rows)
        if msg.id is not None:
            body.update(id=msg.id, lane=msg.lane)
            if msg.timeout is not None:
                body["timeout"] = float(msg.timeout)
        if msg.arrow_frame:
            body["arrow_frame"] = True
    elif isinstance(msg, Result):
        topic = b"result"
        body.update(k=Kind.RESULT.value, truncated=msg.truncated)
        _put_id(body, msg.id)
        if msg.arrow_frame:
            body.update(arrow_frame=True, parts=msg.parts)
            frames: list[Any] = [topic, msgpack.packb(body, use_bin_type=True), msg.arrow]
            return frames
        body["arrow"] = msg.arrow
    elif isinstance(msg, Part):
        body.update(k=Kind.PART.value, id=msg.id)
        part: list[Any] = [b"part", msgpack.packb(body, use_bin_type=True), msg.arrow]
        return part
    elif isinstance(msg, Error):
        topic = b"error"
        body.update(k=Kind.ERROR.value, message=msg.message)
        _put_id(body, msg.id)
    elif isinstance(msg, Manage):
        topic = b"manage"
        body.update(k=Kind.MANAGE.value, action=msg.action, runs=list(msg.run_ids))
        _put_id(body, msg.id)
    elif isinstance(msg, Progress):
        topic = b"progress"
        body.update(k=Kind.PROGRESS.value, id=msg.id, ahead=msg.ahead, started=msg.started)
    elif isinstance(msg, Cancel):
        topic = b"cancel"
        body.update(k=Kind.CANCEL.value, id=msg.id)
    elif isinstance(msg, Stats):
        topic = b"stats"
        body.update(k=Kind.STATS.value, what=msg.what)
        _put_id(body, msg.id)
    else:
        raise WireError("unknown-message", type(msg).__name__)
    return [topic, msgpack.packb(body, use_bin_type=True)]


def _put_id(body: dict, rid: int | None) -> None:
    if rid is not None:
        body["id"] = rid


def _id(body: dict, required: bool = False) -> int | None:
    if "id" not in body and not required:
        return None
    return _seq(body, "id")


def _decode_query(body: dict) -> Query:
    rid = _id(body)
    lane = body.get("lane", "console")
    if lane not in LANES:
        raise WireError("bad-field", f"lane {str(lane)[:20]!r}")
    timeout = body.get("timeout")
    if timeout is not None:
        timeout = float(_get(body, "timeout", (int, float)))
        if not 0 <= timeout < 1e9:
            raise WireError("bad-field", f"timeout {timeout}")
    arrow_frame = body.get("arrow_frame", False)
    if not isinstance(arrow_frame, bool):
        raise WireError("bad-field", "arrow_frame is not a bool")
    return Query(_get(body, "sql", str), int(_get(body, "max_rows", int)), rid, lane, timeout, arrow_frame)


def _get(body: dict, key: str, types: type | tuple[type, ...]) -> Any:
    value = body.get(key)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
        raise WireError("bad-field", f"{key!r} is {type(value).__name__}")
    return value


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _run_id(body: dict) -> str:
    run = _get(body, "run", str)
    if not 0 < len(run) <= MAX_RUN_ID_LEN or "\0" in run:
        raise WireError("bad-run-id", repr(run[:40]))
    return run


def _seq(body: dict, key: str, low: int = 0) -> int:
    value = _get(body, key, int)
    if not low <= value <= MAX_SEQ:
        raise WireError("bad-seq", f"{key}={value}")
    return value


def _unpack_col(name: str, raw: Any, n: int | None) -> Column:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise WireError("bad-column-name", repr(name)[:80])
    if not isinstance(raw, list) or len(raw) != 2:
        raise WireError("bad-column", name)
    code, payload = raw
    if code in ("f8", "i8"):
        if not isinstance(payload, bytes) or len(payload) % 8:
            raise WireError("bad-column", f"{name}: buffer")
        values: Column = np.frombuffer(payload, dtype="<" + code)
    elif code == "obj":
        if not isinstance(payload, list):
            raise WireError("bad-column", f"{name}: values")
        values = payload
    else:
        raise WireError("bad-column", f"{name}: type {code!r}"[:80])
    if n is not None and len(values) != n:
        raise WireError("bad-column", f"{name}: length {len(values)} != {n}")
    return values


def _unpack_section(raw: Any) -> Section:
    if not isinstance(raw, dict):
        raise WireError("bad-section")
    try:
        kind = RecordKind(raw.get("kind"))
    except ValueError:
        raise WireError("unknown-record-kind", repr(raw.get("kind"))[:40]) from None
    cols_raw = raw.get("cols")
    if not isinstance(cols_raw, dict) or "seq" not in cols_raw:
        raise WireError("bad-section", "no seq column")
    seq = _unpack_col("seq", cols_raw["seq"], None)
    if not isinstance(seq, np.ndarray) or seq.dtype.kind != "i":
        raise WireError("bad-section", "seq is not int64")
    cols = {name: _unpack_col(name, col, len(seq)) for name, col in cols_raw.items()}
    ts = cols.get("ts")
    if not isinstance(ts, np.ndarray) or ts.dtype.kind != "f":
        raise WireError("bad-section", "ts is not float64")
    if kind is RecordKind.SCALARS:
        return Section(kind, cols, _scalar_names(raw.get("names"), cols))
    return Section(kind, cols)


def _scalar_names(names: Any, cols: dict[str, Column]) -> tuple[str, ...]:
    if not isinstance(names, list) or not all(
        isinstance(n, str) and 0 < len(n) <= MAX_SCALAR_NAME_LEN and "\0" not in n for n in names
    ):
        raise WireError("bad-section", "scalar names")
    step = cols.get("step")
    if not isinstance(step, np.ndarray) or step.dtype.kind != "i":
        raise WireError("bad-section", "step is not int64")
    if set(cols) != {"seq", "ts", "step", *(f"v{i}" for i in range(len(names)))}:
        raise WireError("bad-section", "scalar columns do not match their names")
    for i in range(len(names)):
        if not isinstance(cols[f"v{i}"], np.ndarray):
            raise WireError("bad-section", "scalar values are not float64")
    return tuple(names)


def _decode_batch(body: dict) -> Batch:
    run = _run_id(body)
    first, last = _seq(body, "first", 1), _seq(body, "last", 1)
    if last < first:
        raise WireError("bad-seq", f"last {last} < first {first}")
    raw_sections = _get(body, "sections", list)
    sections = tuple(_unpack_section(s) for s in raw_sections)
    total = sum(len(s) for s in sections)
    if total != last - first + 1:
        raise WireError("bad-seq", f"{total} records for range {first}..{last}")
    if total:
        seqs = np.concatenate([s.cols["seq"] for s in sections])
        seqs.sort()
        if seqs[0] != first or seqs[-1] != last or (total > 1 and not (np.diff(seqs) == 1).all()):
            raise WireError("bad-seq", "records do not cover the range exactly once")
    ack = body.get("ack", True)
    if not isinstance(ack, bool):
        raise WireError("bad-field", "ack is not a bool")
    return Batch(run, first, last, sections, ack)


def decode(frames: Sequence[bytes | memoryview], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse and validate ``[topic, body]`` (or a result's ``[topic, body, arrow]``, whose
    ``arrow`` is passed on as it is, not copied); raises :class:`WireError` on anything off."""
    if len(frames) not in (2, 3):
        raise WireError("bad-frames", f"{len(frames)} frames")
    try:
        body = msgpack.unpackb(
            frames[1],
            raw=False,
            strict_map_key=True,
            max_bin_len=limits.max_bin_len,
            max_str_len=limits.max_str_len,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises a zoo of types; all mean the same here
        raise WireError("bad-msgpack", type(exc).__name__) from None
    if not isinstance(body, dict):
        raise WireError("bad-body", type(body).__name__)
    if body.get("v") != FORMAT_VERSION:
        raise WireError("bad-version", repr(body.get("v"))[:20])
    kind = body.get("k")
    if (len(frames) == 3) != (kind == Kind.PART.value or (kind == Kind.RESULT.value and "arrow" not in body)):
        raise WireError("bad-frames", f"{len(frames)} frames for {str(kind)[:20]!r}")
    try:
        if kind == Kind.BATCH.value:
            return _decode_batch(body)
        if kind == Kind.HEARTBEAT.value:
            return Heartbeat(
                _run_id(body),
                _seq(body, "seq"),
                float(_get(body, "ts", (int, float))),
                str(body.get("host", ""))[:255],
                int(_get(body, "pid", int)),
            )
        if kind == Kind.ACK.value:
            if "probe" in body:
                probe = float(_get(body, "probe", (int, float)))
                return Ack(_run_id(body), _seq(body, "acked"), _seq(body, "have"), probe)
            return Ack(_run_id(body), _seq(body, "acked"))
        if kind == Kind.ROWS.value:
            stream = body.get("stream")
            if stream is not None and not isinstance(stream, str):
                raise WireError("bad-field", "stream")
            return Rows(_run_id(body), _unpack_section(body), stream)
        if kind == Kind.QUERY.value:
            return _decode_query(body)
        if kind == Kind.RESULT.value:
            return _decode_result(body, frames)
        if kind == Kind.PART.value:
            return Part(_id(body, True), frames[2])  # type: ignore[arg-type]
        if kind == Kind.ERROR.value:
            return Error(_get(body, "message", str), _id(body))
        if kind == Kind.PROGRESS.value:
            return Progress(_id(body, True), _seq(body, "ahead"), bool(body.get("started")))  # type: ignore[arg-type]
        if kind == Kind.CANCEL.value:
            return Cancel(_id(body, True))  # type: ignore[arg-type]
        if kind == Kind.STATS.value:
            what = body.get("what", "counters")
            if what not in STATS_WHAT:
                raise WireError("bad-field", f"what {str(what)[:20]!r}")
            return Stats(what, _id(body))
        if kind == Kind.MANAGE.value:
            action = _get(body, "action", str)
            if action not in MANAGE_ACTIONS:
                raise WireError("bad-field", f"action {action[:20]!r}")
            runs = _get(body, "runs", list)
            if len(runs) > 10_000:
                raise WireError("bad-field", "too many runs")
            return Manage(action, tuple(_run_id({"run": r}) for r in runs), _id(body))
    except WireError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireError("bad-field", str(exc)[:80]) from None
    raise WireError("unknown-kind", repr(kind)[:40])


def _decode_result(body: dict, frames: Sequence[bytes | memoryview]) -> Result:
    truncated, rid = bool(body.get("truncated", False)), _id(body)
    if len(frames) == 3:
        if body.get("arrow_frame") is not True:
            raise WireError("bad-field", "a result in 3 frames without arrow_frame")
        return Result(frames[2], truncated, rid, True, _seq(body, "parts"))
    return Result(_get(body, "arrow", bytes), truncated, rid)

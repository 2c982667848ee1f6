"""The shared-memory ring between a training process and its shipper."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from traindash.producer import ring
from traindash.producer.packing import EPISODE_RECORD
from traindash.wire import RecordKind


def _pair(capacity: int = 4096) -> tuple[ring.RingWriter, ring.RingReader]:
    fd = ring.create(capacity)
    writer, reader = ring.RingWriter(fd), ring.RingReader(fd)
    os.close(fd)  # both mappings keep the memory alive
    return writer, reader


def _episode(i: int) -> tuple:
    return (1000.0 + i, i, float(i), 0.5, 0.6, 10.0, 7, 0.1, 0.001)


def test_records_come_out_in_order_across_many_wraps() -> None:
    writer, reader = _pair(4096)
    out: list = []
    expected: list = []
    for i in range(2000):
        if i % 7 == 0:
            item = (3, float(i), RecordKind.RUN, {"i": i, "q": np.arange(i % 5, dtype=float)})
            writer.append(item)
        elif i % 2:
            assert writer.put_episode(*_episode(i))
            item = EPISODE_RECORD.pack(*_episode(i))
        else:
            item = EPISODE_RECORD.pack(*_episode(i))
            writer.append(item)
        expected.append(item)
        if i % 20 == 19:  # 20 records (~1.7 kB) at a time through a 4 kB ring
            assert reader.read_into(out) == 20
            reader.release(reader.tail)
    reader.read_into(out)
    assert writer.written > 20 * 4096  # it wrapped many times
    assert len(out) == len(expected)
    for got, want in zip(out, expected, strict=True):
        if isinstance(want, bytes):
            assert got == want
        else:
            assert got[:3] == want[:3] and got[3]["i"] == want[3]["i"]
            assert np.array_equal(got[3]["q"], want[3]["q"])


def test_a_full_ring_waits_for_the_reader_and_loses_nothing() -> None:
    writer, reader = _pair(4096)
    calls = []
    writer.on_full = lambda: calls.append(1)
    out: list = []
    stop = threading.Event()

    def read_slowly() -> None:
        while not stop.is_set():
            time.sleep(0.01)
            reader.read_into(out)
            reader.release(reader.tail)

    t = threading.Thread(target=read_slowly)
    t.start()
    try:
        for i in range(500):  # 40 kB through 4 kB
            assert writer.put_episode(*_episode(i))
    finally:
        stop.set()
        t.join()
    reader.read_into(out)
    assert [EPISODE_RECORD.unpack(r)[1] for r in out] == list(range(500))
    assert calls and writer.waited > 0


def test_values_that_do_not_pack_are_refused_by_put_episode() -> None:
    writer, reader = _pair()
    assert not writer.put_episode(1.0, "seven", 1.0, 0, 0, 0, 0, 0, 0)
    assert not writer.put_episode(1.0, 7, None, 0, 0, 0, 0, 0, 0)
    assert reader.read_into([]) == 0  # nothing half-written became visible


def test_unpicklable_fields_travel_as_text() -> None:
    writer, reader = _pair()
    lock = threading.Lock()
    writer.append((1, 2.0, {"ok": 1.5, "odd": lock}))
    out: list = []
    reader.read_into(out)
    assert out[0][2] == {"ok": 1.5, "odd": str(lock)}


def test_oversized_records_and_bad_sizes_are_clear_errors() -> None:
    writer, _ = _pair(4096)
    with pytest.raises(ValueError, match="does not fit the sender's ring"):
        writer.append((1, b"x" * 3000))
    with pytest.raises(ValueError, match="power of two"):
        ring.create(5000)


def test_a_damaged_ring_is_reported_not_misread() -> None:
    writer, reader = _pair()
    writer.append(EPISODE_RECORD.pack(*_episode(1)))
    ring._FRAME.pack_into(writer.mm, ring.DATA, 72, 9)  # an unknown frame kind
    with pytest.raises(ring.RingError, match="unknown frame kind 9"):
        reader.read_into([])
    writer.set(ring.HEAD, 10 * 4096)
    with pytest.raises(ring.RingError, match="not within its capacity"):
        reader.read_into([])


TICKER = r"""
import sys
from traindash.producer import ring
w = ring.RingWriter(int(sys.argv[1]))
for i in range(1, 400_001):
    w.set(ring.HEAD, i * 0x0101_0101)  # every byte changes on each step
"""


def test_the_head_is_never_read_torn_across_processes() -> None:
    import subprocess
    import sys

    fd = ring.create(4096)
    reader = ring.RingReader(fd)
    writer = subprocess.Popen([sys.executable, "-c", TICKER, str(fd)], pass_fds=(fd,))
    try:
        last, reads = 0, 0
        while writer.poll() is None or reads == 0:
            value = reader.get(ring.HEAD)
            reads += 1
            # A byte-by-byte store would show mixes of two values: not a multiple, or going back.
            assert value % 0x0101_0101 == 0 and value >= last, (hex(value), hex(last))
            last = value
    finally:
        writer.kill()
        writer.wait()
        os.close(fd)
    assert last == 400_000 * 0x0101_0101 and reads > 1000

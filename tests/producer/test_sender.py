from __future__ import annotations

import threading
import time

from traindash.producer.sender import Wake


def test_wake_returns_at_once_when_set_and_times_out_otherwise() -> None:
    wake = Wake()
    t0 = time.monotonic()
    assert wake.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    wake.set()
    wake.set()  # setting twice is one wake-up, not an error
    assert wake.wait(5) is True
    assert wake.wait(0.01) is False  # consumed


def test_wake_from_another_thread() -> None:
    wake = Wake()
    timer = threading.Timer(0.05, wake.set)
    timer.start()
    t0 = time.monotonic()
    try:
        assert wake.wait(10) is True
        assert time.monotonic() - t0 < 5
    finally:
        timer.cancel()

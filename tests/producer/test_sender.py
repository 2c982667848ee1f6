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


def test_each_configured_sender_has_one_entry_in_the_table_and_its_own_class(tmp_path) -> None:
    from traindash import config
    from traindash.producer import MetricsLogger
    from traindash.producer.logger import SENDERS, ProcessSenderLogger

    assert tuple(SENDERS) == config.SENDERS
    assert SENDERS["process"].logger_class is ProcessSenderLogger
    for name in config.SENDERS:
        lg = MetricsLogger(
            "table", output_dir=str(tmp_path), sender=name, config=config.ProducerConfig(close_timeout=0.2)
        )
        try:
            assert type(lg) is SENDERS[name].logger_class and isinstance(lg, MetricsLogger)
            assert "log_episode" not in vars(lg)  # the class's method, not one patched on
            lg.log_episode(1, 1.0)
            lg.log_episode(2, 2.0, custom=3.0)  # the general path
            assert lg.get_statistics()["total_episodes"] == 2
        finally:
            lg.close(timeout=0.2)


def test_a_subclass_of_metricslogger_keeps_its_class_on_either_sender(tmp_path) -> None:
    from traindash import config
    from traindash.producer import MetricsLogger

    class Mine(MetricsLogger):
        pass

    for name in config.SENDERS:
        lg = Mine(
            "mine", output_dir=str(tmp_path), sender=name, config=config.ProducerConfig(close_timeout=0.2)
        )
        try:
            assert type(lg) is Mine
            lg.log_episode(1, 1.0)
            assert lg.get_statistics()["total_episodes"] == 1
        finally:
            lg.close(timeout=0.2)


def test_a_quiet_sender_dozes_until_the_next_record_or_heartbeat(collector, tmp_path) -> None:
    """With nothing queued or in flight the loop sleeps until a heartbeat is due (here 30 s)
    instead of every flush interval, and a logged record wakes it at once."""
    from traindash.config import ProducerConfig
    from traindash.producer import MetricsLogger

    cfg = ProducerConfig(endpoints=collector.endpoints, flush_interval=0.05, heartbeat_interval=30.0)
    lg = MetricsLogger("doze", output_dir=str(tmp_path), config=cfg, system_metrics_interval=None)
    try:
        lg.log_episode(0, profit=1.0)
        assert lg.flush(timeout=60)
        sender = lg._sender
        wakes = []
        idle = sender._idle

        def counted(timeout: float, doze_until: float | None = None) -> None:
            wakes.append(doze_until)
            idle(timeout, doze_until)

        sender._idle = counted
        time.sleep(0.5)  # the ack's last wake-up, then the doze
        wakes.clear()
        time.sleep(2.0)  # 40 flush intervals
        assert len(wakes) <= 2, wakes  # awake every 50 ms this would be about 40
        before = collector.scalar("SELECT count(*) FROM episodes")
        started = time.monotonic()
        lg.log_episode(1, profit=2.0)
        deadline = started + 20  # well inside the 30 s until the next heartbeat
        while collector.scalar("SELECT count(*) FROM episodes") == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert collector.scalar("SELECT count(*) FROM episodes") == before + 1
    finally:
        lg.close(timeout=30)

from __future__ import annotations

import pytest

from traindash.producer.packing import EPISODE, MODEL, pack
from traindash.producer.stats import RunStats, Window


def feed(stats: RunStats, rows: list[tuple], first: int = 1) -> None:
    stats.update(pack(rows, first))


def ep(i: int, profit: float, drawdown: float = 0.0) -> tuple:
    return (EPISODE, float(i), i, profit, 0.1 * i, 0.5, drawdown, 1, 0.9, 0.01, None)


def test_best_latest_and_smoothed() -> None:
    s = RunStats(history=100)
    feed(s, [ep(i, p, d) for i, (p, d) in enumerate([(5, 1), (9, 7), (-3, 2)], start=1)])
    assert s.best_record("profit")["episode"] == 2
    assert s.best_record("drawdown")["episode"] == 1  # lower is better
    assert s.latest_episode()["profit"] == -3
    assert s.smoothed("profit", 2) == pytest.approx(3.0)
    st = s.statistics()
    assert st["best_profit"] == 9 and st["best_episode"] == 2 and st["total_episodes"] == 3
    assert st["max_drawdown"] == 7 and st["avg_profit"] == pytest.approx(11 / 3)


def test_window_is_bounded_but_all_time_figures_are_not() -> None:
    s = RunStats(history=50)
    for start in range(0, 10_000, 1000):
        feed(s, [ep(i, float(i)) for i in range(start, start + 1000)], start + 1)
    assert len(s.recent_episodes()) == 50
    assert s.episodes.rows <= 1050
    st = s.statistics()
    assert st["total_episodes"] == 10_000 and st["best_profit"] == 9999.0
    assert st["recent_avg_profit"] == pytest.approx(sum(range(9950, 10_000)) / 50)


def test_model_metrics_feed_loss_stats() -> None:
    s = RunStats(history=10)
    feed(s, [(MODEL, 1.0, i, i, 1.0 / i, None, None, None, None) for i in range(1, 5)])
    st = s.statistics()
    assert st["total_model_updates"] == 4 and st["min_loss"] == pytest.approx(0.25)
    assert s.smoothed("loss", 2) == pytest.approx((1 / 3 + 1 / 4) / 2)


def test_window_last_crosses_sections() -> None:
    w = Window(5)
    for start in (0, 3, 6):
        (sec,) = pack([ep(i, float(i)) for i in range(start, start + 3)], start + 1)
        w.add(sec)
    assert [r["episode"] for r in w.last()] == [4, 5, 6, 7, 8]
    assert w.column("profit", 4) == [5.0, 6.0, 7.0, 8.0]

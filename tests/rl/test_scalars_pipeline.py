"""``MetricsLogger.log`` through real sockets into DuckDB: every scalar exactly once, both senders."""

from __future__ import annotations

import pytest

from tests.harness import CollectorProcess
from traindash.producer import MetricsLogger

N = 400


def _log(lg: MetricsLogger, start: int, n: int) -> None:
    metrics = {}
    for i in range(start, start + n):
        metrics["losses/value_loss"] = i * 0.5
        metrics["charts/episodic_return"] = float(i)
        lg.log(metrics, step=i * 128)  # the same dict, refilled: each call keeps its own values


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_scalars_arrive_once_at_their_steps(collector: CollectorProcess, tmp_path, sender: str) -> None:
    lg = MetricsLogger("scalars", output_dir=str(tmp_path), config=collector.producer_config(), sender=sender)
    _log(lg, 0, N)
    lg.log({"charts/sps": 1234})  # no step: one past the last
    lg.log_episode(1, 2.0)
    assert lg.flush(timeout=30)
    lg.close()
    rows = collector.query(
        "SELECT name, count(*) AS n, count(DISTINCT seq) AS s, min(step) AS lo, max(step) AS hi, "
        "sum(value) AS total FROM scalars GROUP BY name ORDER BY name"
    ).to_pylist()
    assert rows == [
        {
            "name": "charts/episodic_return",
            "n": N,
            "s": N,
            "lo": 0,
            "hi": (N - 1) * 128,
            "total": N * (N - 1) / 2,
        },
        {
            "name": "charts/sps",
            "n": 1,
            "s": 1,
            "lo": (N - 1) * 128 + 1,
            "hi": (N - 1) * 128 + 1,
            "total": 1234.0,
        },
        {"name": "losses/value_loss", "n": N, "s": N, "lo": 0, "hi": (N - 1) * 128, "total": N * (N - 1) / 4},
    ]
    assert collector.scalar("SELECT count(*) FROM episodes") == 1


@pytest.mark.parametrize("sender", ["thread", "process"])
def test_scalars_logged_without_a_collector_are_resent_once(
    stopped_collector: CollectorProcess, tmp_path, sender: str
) -> None:
    c = stopped_collector
    out = str(tmp_path / "logs")
    first = MetricsLogger("offline-scalars", output_dir=out, config=c.producer_config(), sender=sender)
    _log(first, 0, N)
    first.close(timeout=0.2)
    c.start()
    second = MetricsLogger(
        "offline-scalars", output_dir=out, run_id=first.run_id, config=c.producer_config(), sender=sender
    )
    _log(second, N, N)
    assert second.flush(timeout=30)
    second.close()
    row = c.query(
        "SELECT count(*) AS n, count(DISTINCT (seq, name)) AS d, count(DISTINCT step) AS steps FROM scalars"
    ).to_pylist()[0]
    assert row == {"n": 4 * N, "d": 4 * N, "steps": 2 * N}

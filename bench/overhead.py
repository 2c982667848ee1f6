"""Training overhead: how much slower a training loop gets when it logs to traindash.

    .venv/bin/python bench/overhead.py [--quick]

A simulated training loop does 1 ms of work per episode; each "with" block also calls
``log_episode`` every episode (the issue's set-up), and in a second variant
``log_model_metrics`` (loss, 16 Q-values, gradient stats) every 5th as well, with a real
collector subprocess receiving. "With" and "without" blocks of N episodes alternate (the
order flips every round); the overhead is the median over rounds of
``(t_with - t_without) / t_without``, reported with the middle half of the rounds. One
MetricsLogger lives through all the rounds, as in a real run (its first auto-save and its
connection happen in a 300-episode warm-up); in "without" blocks it sits idle, and every
"with" block is flushed after its clock stops.

Two kinds of simulated work:

* ``busy-wait``: spin on ``perf_counter`` until 1 ms has passed. Time the sender thread
  takes while the loop spins is absorbed by the deadline, so this shows the cost on the
  training thread: its log calls, and the GIL hand-offs to and from the sender.
* ``fixed CPU work``: a pure-Python loop calibrated to take about 1 ms. Here every
  microsecond the sender thread holds the GIL delays the loop, so this is the upper bound
  for a trainer whose work never releases the GIL.

Each is measured with the default thread sender and with ``sender="process"``, where log
calls copy records into shared memory and a shipper process does the rest (no GIL shared).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, print_table, row  # noqa: E402

BENCH = "training_overhead"
WORK_S = 0.001
MODEL_EVERY = 5
WARMUP = 300
Q_VALUES = [1.0 + 0.1 * j for j in range(16)]
GRADIENTS = {"mean": 1e-4, "std": 1e-2}


def busy_wait() -> None:
    """1 ms of simulated work: spin on the clock."""
    deadline = time.perf_counter() + WORK_S
    while time.perf_counter() < deadline:
        pass


def _spin(k: int) -> int:
    x = 0
    for j in range(k):
        x += j
    return x


def calibrated_work() -> Callable[[], None]:
    """A fixed pure-Python computation that takes about 1 ms on this machine right now."""
    k = 20_000
    for _ in range(3):
        samples = []
        for _ in range(30):
            t0 = time.perf_counter()
            _spin(k)
            samples.append(time.perf_counter() - t0)
        k = max(1000, int(k * WORK_S / median(samples)))
    return lambda: _spin(k)  # noqa: B023 - k is final here


def _sender_clock(logger: object) -> Callable[[], float] | None:
    """The CPU seconds used so far by the logger's sender thread or shipper process (Linux)."""
    proc = getattr(logger._sender, "proc", None)  # type: ignore[attr-defined]
    if proc is not None:
        tasks = Path(f"/proc/{proc.pid}/task")

        def shipper_cpu() -> float:
            total = 0
            for task in tasks.iterdir():
                try:
                    total += int((task / "schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    pass
            return total / 1e9

        return shipper_cpu if tasks.exists() else None
    try:
        clock_id = time.pthread_getcpuclockid(logger._sender.ident)  # type: ignore[attr-defined]
    except (AttributeError, OSError, TypeError):
        return None
    return lambda: time.clock_gettime(clock_id)


def block(n: int, work: Callable[[], None], logger: object | None, model: bool = True) -> tuple[float, float]:
    """(wall s, process CPU s) for ``n`` episodes of ``work``, logging each when ``logger``."""
    clock, cpu = time.perf_counter, time.process_time
    if logger is None:
        c0, t0 = cpu(), clock()
        for _ in range(n):
            work()
        return clock() - t0, cpu() - c0
    log_episode = logger.log_episode  # type: ignore[attr-defined]
    log_model = logger.log_model_metrics  # type: ignore[attr-defined]
    c0, t0 = cpu(), clock()
    if not model:
        for ep in range(n):
            work()
            log_episode(ep, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)
        return clock() - t0, cpu() - c0
    for ep in range(n):
        work()
        log_episode(ep, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)
        if ep % MODEL_EVERY == 0:
            log_model(0.25, q_values=Q_VALUES, gradients=GRADIENTS)
    return clock() - t0, cpu() - c0


def _quartiles(values: list[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]


def measure(
    work_name: str,
    work: Callable[[], None],
    rounds: int,
    episodes: int,
    collector: object,
    tmp: Path,
    model: bool,
    sender: str = "thread",
    flush_each: bool = True,
) -> list[dict]:
    """Interleaved with/without rounds for one kind of work; rows for the table.

    With ``flush_each`` every "with" block is flushed after its clock stops, so it pays for
    its own sending; the trainer then sleeps while it waits. Without, the loop never
    blocks, as a training loop that only logs; a block's sending may spill into the next.
    """
    from traindash.producer import MetricsLogger

    wall_pct: list[float] = []
    cpu_pct: list[float] = []
    per_episode_us: list[float] = []
    base_s: list[float] = []
    sender_cpu: list[float] = []
    unacked = 0
    # One long-lived logger, as in a real run. Its first auto-save (at episode 50, then at
    # most every 30 s) and its connection set-up happen in the warm-up, outside the clock.
    logger = MetricsLogger(
        "bench-overhead", output_dir=str(tmp / "logs"), sender=sender, config=collector.producer_config()
    )  # type: ignore[attr-defined]
    try:
        time.sleep(0.1)
        block(WARMUP, work, logger, model)
        logger.flush(timeout=30)
        time.sleep(0.5)
        sender_clock = _sender_clock(logger)
        for r in range(rounds):
            times: dict[bool, tuple[float, float]] = {}
            for with_logging in (False, True) if r % 2 == 0 else (True, False):
                if not with_logging:
                    times[False] = block(episodes, work, None)
                    continue
                s0 = sender_clock() if sender_clock is not None else 0.0
                times[True] = block(episodes, work, logger, model)
                # Everything sent and acknowledged before the next block starts.
                if flush_each and not logger.flush(timeout=30):
                    unacked += 1
                if sender_clock is not None:
                    sender_cpu.append(sender_clock() - s0)
            (w1, c1), (w0, c0) = times[True], times[False]
            wall_pct.append((w1 - w0) / w0 * 100)
            cpu_pct.append((c1 - c0) / c0 * 100)
            per_episode_us.append((w1 - w0) / episodes * 1e6)
            base_s.append(w0)
    finally:
        logger.close()
    q1, q3 = _quartiles(wall_pct)
    ov = sorted(wall_pct)
    note = (
        f"median of {rounds} interleaved rounds x {episodes:,} episodes; middle half of "
        f"the rounds {q1:+.3f}% .. {q3:+.3f}%, all {ov[0]:+.2f}% .. {ov[-1]:+.2f}%; "
        f"episode without logging took "
        f"{median(base_s) / episodes * 1e3:.3f} ms (1 ms = idle machine)"
    )
    if unacked:
        note += f"; {unacked} blocks not fully acknowledged within 30 s"
    if not flush_each:
        note += "; never flushed between blocks"
    calls = f"log_episode + log_model_metrics every {MODEL_EVERY}th" if model else "log_episode"
    if not flush_each:
        calls += ", no flush between blocks"
    tool = f"traindash ({sender} sender), {work_name}, {calls}"
    own_cpu = (
        "process_time of the trainer (main + sender thread)"
        if sender == "thread"
        else "process_time of the trainer (the shipper's CPU is its own process's, below)"
    )
    rows = [
        row(
            BENCH,
            tool,
            "wall-time overhead",
            median(wall_pct),
            "%",
            note
            + (
                "; issue 7's set-up: guide promises < 1%, target < 0.1%"
                if work is busy_wait and not model
                else "; harsher than issue 7's set-up (busy-wait, log_episode), whose target is "
                "< 0.1%; guide promises < 1%"
            ),
        ),
        row(
            BENCH,
            tool,
            "trainer CPU-time overhead",
            median(cpu_pct),
            "%",
            f"{own_cpu}, less disturbed by other processes than wall time; "
            f"rounds ranged {min(cpu_pct):+.2f}% .. {max(cpu_pct):+.2f}%",
        ),
        row(BENCH, tool, "added wall time per episode", median(per_episode_us), "us", f"{calls} per episode"),
    ]
    if sender_cpu:
        per_ep = sum(sender_cpu) / (len(sender_cpu) * episodes) * 1e6
        what = "sender thread" if sender == "thread" else "shipper process"
        rows.append(
            row(
                BENCH,
                tool,
                f"{what} CPU per episode",
                per_ep,
                "us",
                f"the {what}'s own CPU clock over the block and its flush; "
                f"{per_ep / (WORK_S * 1e4):.1f}% of a 1 ms episode",
            )
        )
    return rows


STALL_FACTOR = 1.2
# (sender, log_model_metrics too) for both kinds of work; CPU-bound work also runs both
# senders without a flush between blocks.
SETUPS = [("thread", False), ("thread", True), ("process", False)]


def _stall_us(durations: list[float]) -> tuple[float, float]:
    """(median episode s, mean time per episode spent beyond STALL_FACTOR x the median, us)."""
    ordered = sorted(durations)
    med = ordered[len(ordered) // 2]
    excess = sum(d - med for d in durations if d > STALL_FACTOR * med)
    return med, excess / len(durations) * 1e6


def stalls(
    work: Callable[[], None],
    segments: int,
    episodes: int,
    collector: object,
    tmp: Path,
    sender: str = "thread",
) -> list[dict]:
    """Stalls of a CPU-bound loop: episodes that took much longer than the median.

    Block totals of pure-Python work drift by several percent over seconds here, with or
    without logging. Stalls do not drift with the machine's speed: an episode that waited
    for the GIL, or lost its core, took far longer than its neighbours. This compares the
    time lost in such episodes with and without logging; it leaves out costs spread evenly
    over every episode, such as the log call itself (see the busy-wait rows and log_call).
    """
    from traindash.producer import MetricsLogger

    logger = MetricsLogger(
        "bench-stalls", output_dir=str(tmp / "logs"), sender=sender, config=collector.producer_config()
    )  # type: ignore[attr-defined]
    per_mode: dict[bool, list[float]] = {True: [], False: []}
    medians: list[float] = []
    clock = time.perf_counter
    try:
        block(WARMUP, work, logger, False)
        logger.flush(timeout=30)
        log_episode = logger.log_episode
        for segment in range(2 * segments):
            logging_on = segment % 2 == 0
            durations = []
            for ep in range(episodes):
                t0 = clock()
                work()
                if logging_on:
                    log_episode(ep, 1.5, 0.5, 0.6, 10.0, 7, 0.1, 0.001)
                durations.append(clock() - t0)
            logger.flush(timeout=30)
            med, lost = _stall_us(durations)
            per_mode[logging_on].append(lost)
            medians.append(med)
    finally:
        logger.close()
    with_us, without_us = median(per_mode[True]), median(per_mode[False])
    episode_us = median(medians) * 1e6
    note = (
        f"{segments} segments of {episodes:,} episodes each way, alternating; an episode "
        f"stalled when it took over {STALL_FACTOR}x the median ({episode_us:.0f} us); "
        f"time lost in stalls per episode: {with_us:.1f} us with logging, "
        f"{without_us:.1f} us without (medians over segments)"
    )
    tool = f"traindash ({sender} sender), fixed CPU work ~1 ms, log_episode"
    return [
        row(BENCH, tool, "stall time added per episode", with_us - without_us, "us", note),
        row(
            BENCH,
            tool,
            "stall overhead",
            (with_us - without_us) / episode_us * 100,
            "%",
            "the row above as a share of the median episode",
        ),
    ]


def run(quick: bool = False) -> list[dict]:
    """Measure the overhead with both kinds of simulated work; rows in the bench/run.py contract."""
    from tests.harness import CollectorProcess, free_endpoints

    rounds, episodes = (8, 200) if quick else (40, 250)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp_name:
        tmp = Path(tmp_name)
        collector = CollectorProcess(
            db=tmp / "bench.duckdb", endpoints=free_endpoints(), log_path=tmp / "collector.log"
        )
        try:
            collector.start()
            block(200, busy_wait, None)  # warm the loop up
            for sender, model in SETUPS:
                rows += measure("busy-wait 1 ms", busy_wait, rounds, episodes, collector, tmp, model, sender)
            work = calibrated_work()
            for sender, model in SETUPS:
                rows += measure("fixed CPU work ~1 ms", work, rounds, episodes, collector, tmp, model, sender)
            for sender in ("thread", "process"):
                rows += measure(
                    "fixed CPU work ~1 ms",
                    work,
                    rounds,
                    episodes,
                    collector,
                    tmp,
                    False,
                    sender,
                    flush_each=False,
                )
            segments, per_segment = (2, 1000) if quick else (6, 2500)
            for sender in ("thread", "process"):
                rows += stalls(work, segments, per_segment, collector, tmp, sender)
            episodes_stored = collector.scalar("SELECT count(*) FROM episodes")
            collector.stop()
        finally:
            collector.kill()
    measured = 2 * len(SETUPS) + 2
    expected = measured * (rounds * episodes + WARMUP) + 2 * (WARMUP + segments * per_segment)
    rows.append(
        row(BENCH, "traindash", "episodes committed", episodes_stored, "rows", f"expected {expected:,}")
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    args = parser.parse_args()
    print_table("Training overhead of traindash logging (1 ms of work per episode)", run(quick=args.quick))


if __name__ == "__main__":
    main()

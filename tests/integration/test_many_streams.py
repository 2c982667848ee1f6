"""Many streams into one collector: every close() returns promptly and reports only the truth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ROOT, CollectorProcess

pytestmark = pytest.mark.slow

PROCESSES, LOGGERS, RATE, SECONDS = 5, 100, 2.0, 6.0
CLOSE_TIMEOUT = 60.0
CLOSE_BOUND = 15.0  # well under the close timeout; a close that hit it waited for nothing

# Each child: LOGGERS loggers (one stream each) logging RATE episodes/s for SECONDS, then
# closed one after another. Prints one JSON line: each close's duration, run and last
# seq, and every warning the producer logged.
CHILD = r"""
import json, logging, sys, time
from traindash.config import Endpoints, ProducerConfig
from traindash.producer import MetricsLogger

k, loggers, rate, seconds, close_timeout = sys.argv[1], int(sys.argv[2]), *map(float, sys.argv[3:6])
ep = Endpoints(*sys.argv[6:9])
warnings = []

class Keep(logging.Handler):
    def emit(self, record):
        warnings.append(record.getMessage())

logging.getLogger("traindash").addHandler(Keep(logging.WARNING))
cfg = ProducerConfig(endpoints=ep, close_timeout=close_timeout)
lgs = [MetricsLogger(f"many{k}", output_dir=sys.argv[9], config=cfg) for _ in range(loggers)]
n, t0 = 0, time.monotonic()
while time.monotonic() - t0 < seconds:
    for lg in lgs:
        lg.log_episode(episode=n, profit=float(n))
    n += 1
    time.sleep(max(0.0, t0 + n / rate - time.monotonic()))
closes = []
for lg in lgs:
    c0 = time.monotonic()
    lg.close()
    closes.append([lg.run_id, time.monotonic() - c0, lg._sender.last_seq, lg._sender.pending])
print(json.dumps({"episodes": n, "closes": closes, "warnings": warnings}), flush=True)
"""


def test_many_streams_close_promptly_and_report_only_what_is_missing(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    ep = collector.endpoints
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(k), str(LOGGERS), str(RATE), str(SECONDS), str(CLOSE_TIMEOUT)]
            + [ep.ingest, ep.rows, ep.query, str(tmp_path / f"logs{k}")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(PROCESSES)
    ]
    results = []
    try:
        for child in children:
            out, err = child.communicate(timeout=100)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for child in children:
            child.kill()
    closes = [c for r in results for c in r["closes"]]
    marks = collector.query("SELECT run_id, acked_seq FROM runs").to_pydict()
    acked = dict(zip(marks["run_id"], marks["acked_seq"], strict=True))
    # No logger reports records missing that the database holds.
    for run_id, _took, last_seq, pending in closes:
        if pending:
            assert acked.get(run_id, 0) < last_seq, f"{run_id} reported {pending} unacknowledged, all stored"
    warnings = [w for r in results for w in r["warnings"]]
    assert warnings == [], warnings[:3]
    slowest = max(took for _, took, _, _ in closes)
    assert slowest < CLOSE_BOUND, f"the slowest of {len(closes)} closes took {slowest:.1f} s"
    # Every record exactly once.
    expected = sum(r["episodes"] for r in results) * LOGGERS
    stored = collector.query(
        "SELECT count(*) AS n, count(*) - count(DISTINCT (run_id, seq)) AS dup FROM episodes"
    ).to_pylist()[0]
    assert stored == {"n": expected, "dup": 0}

"""Every CSV/JSON file path end to end against a real collector: doubles come back bit for bit.

The writer itself is property-tested in tests/test_output.py; these prove each real path
(``traindash sql``, ``traindash export``, ``save_metrics``, ``export_comparison``) goes through it.
"""

from __future__ import annotations

import io
import json
import math
import random
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest

from tests.harness import CollectorProcess, run_cli
from tests.test_output import SPECIAL, same
from traindash.producer import ExperimentTracker, MetricsLogger
from traindash.producer.experiment_tracker import comparison_rows


def hard_doubles(n: int, seed: int) -> list[float]:
    """The hand-picked edge cases, then random bit patterns (every exponent, NaN payloads)."""
    rng = random.Random(seed)
    out = list(SPECIAL)
    while len(out) < n:
        out.append(struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0])
    return out[:n]


def sql_literal(v: float) -> str:
    return f"'{v!r}'::DOUBLE"


def read_csv_exact(text: str) -> pd.DataFrame:
    """The read docs/output.md gives for telling NULL (empty field) from NaN (``nan``)."""
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], float_precision="round_trip")


def assert_same_table(truth: pa.Table, df: pd.DataFrame, nulls_distinct: bool) -> None:
    """``df`` (read back by pandas) holds ``truth`` (read through SQL), column by column."""
    assert list(df.columns) == truth.column_names
    assert len(df) == truth.num_rows
    for name in truth.column_names:
        column = truth.column(name)
        values, null = column.to_pylist(), [v is None for v in column.to_pylist()]
        got = df[name]
        if nulls_distinct or not pa.types.is_floating(column.type):
            assert got.isna().tolist() == null, name
        if pa.types.is_floating(column.type):
            floats = got.astype("float64").tolist()
            bad = [(v, b) for v, b in zip(values, floats, strict=True) if v is not None and not same(v, b)]
            assert not bad, (name, bad[:5])
        elif pa.types.is_timestamp(column.type):
            want = column.to_pandas().dt.tz_localize("UTC")
            back = pd.to_datetime(got, utc=True, format="ISO8601")
            # same instants to the microsecond (pandas 2 parses to ns, Arrow gives us)
            assert back.astype("datetime64[us, UTC]").equals(want.astype("datetime64[us, UTC]")), name
        elif pa.types.is_integer(column.type):
            assert [None if n else int(g) for g, n in zip(got, null, strict=True)] == values, name
        else:
            assert [None if n else g for g, n in zip(got, null, strict=True)] == values, name


def log_hard_run(collector: CollectorProcess, tmp_path: Path, n: int = 240) -> MetricsLogger:
    profits, sharpes, customs = hard_doubles(n, 1), hard_doubles(n, 2)[::-1], hard_doubles(n, 3)
    lg = MetricsLogger("hard", output_dir=str(tmp_path / "logs"), config=collector.producer_config())
    for i in range(n):
        extra = {"rare": customs[-i]} if i % 3 == 0 else {}
        lg.log_episode(
            i, profits[i], sharpe=sharpes[i], num_trades=i * 7, custom_score=customs[i], tag=f"t{i}", **extra
        )
    assert lg.flush(timeout=30)
    return lg


def test_sql_csv_and_json_print_every_digit(collector: CollectorProcess) -> None:
    repro = run_cli(
        "sql",
        "SELECT 375547.624894::DOUBLE AS x, 0.1234567891234::DOUBLE AS y",
        "--format",
        "csv",
        env=collector.env,
    )
    assert repro.returncode == 0, repro.stderr
    assert repro.stdout == "x,y\n375547.624894,0.1234567891234\n"

    values = hard_doubles(60, 4)
    sql = "SELECT * FROM (VALUES " + ", ".join(f"({sql_literal(v)})" for v in values) + ") t(x)"
    truth = collector.query(sql)
    assert all(same(v, b) for v, b in zip(values, truth.column("x").to_pylist(), strict=True))
    as_csv = run_cli("sql", sql, "--format", "csv", env=collector.env)
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines()[1:] == [repr(v) for v in values]
    back = pd.read_csv(io.StringIO(as_csv.stdout), float_precision="round_trip")["x"]
    assert all(same(v, b) for v, b in zip(values, back, strict=True))
    as_json = run_cli("sql", sql, "--format", "json", env=collector.env)
    assert as_json.returncode == 0, as_json.stderr
    back = pd.read_json(io.BytesIO(as_json.stdout.encode()), lines=True, engine="pyarrow")["x"]
    assert all(same(v, b) for v, b in zip(values, back, strict=True))
    assert [json.loads(line)["x"] is not None for line in as_json.stdout.splitlines()] == [True] * 60


def test_export_of_a_real_run_equals_the_table_read_through_sql(
    collector: CollectorProcess, tmp_path: Path
) -> None:
    lg = log_hard_run(collector, tmp_path)
    lg.close()
    truth = collector.query("SELECT * FROM episodes ORDER BY run_id, seq")
    assert truth.num_rows == 240 and truth.column("rare").null_count == 160

    out = run_cli("export", "--format", "csv", "--out", str(tmp_path / "e.csv"), env=collector.env)
    assert out.returncode == 0, out.stderr
    text = (tmp_path / "e.csv").read_text()
    assert_same_table(truth, read_csv_exact(text), nulls_distinct=True)
    # The plain pandas read too: NaN and NULL both become NaN there, every other value exact.
    assert_same_table(
        truth, pd.read_csv(tmp_path / "e.csv", float_precision="round_trip"), nulls_distinct=False
    )

    out = run_cli("export", "--format", "json", "--out", str(tmp_path / "e.jsonl"), env=collector.env)
    assert out.returncode == 0, out.stderr
    exported = pd.read_json(tmp_path / "e.jsonl", lines=True, engine="pyarrow")
    assert_same_table(truth, exported, nulls_distinct=False)

    # The same table through `traindash sql --format json` equals the CSV export.
    via_sql = run_cli(
        "sql", "SELECT * FROM episodes ORDER BY run_id, seq", "--format", "json", env=collector.env
    )
    assert via_sql.returncode == 0, via_sql.stderr
    assert via_sql.stdout == (tmp_path / "e.jsonl").read_text()
    lines = [json.loads(line) for line in via_sql.stdout.splitlines()]
    assert [r["rare"] is None for r in lines] == [v is None for v in truth.column("rare").to_pylist()]
    sql_df = pd.read_json(io.BytesIO(via_sql.stdout.encode()), lines=True, engine="pyarrow")
    csv_df = read_csv_exact(text)
    for name in truth.column_names:
        if pa.types.is_floating(truth.column(name).type):
            pairs = zip(csv_df[name].astype("float64"), sql_df[name].astype("float64"), strict=True)
            assert all(same(a, b) or (math.isnan(a) and math.isnan(b)) for a, b in pairs), name
    assert lines[0]["ts"].endswith("+00:00")


def test_save_metrics_csv_and_json_keep_every_digit(collector: CollectorProcess, tmp_path: Path) -> None:
    lg = log_hard_run(collector, tmp_path, n=90)
    profits = hard_doubles(90, 1)
    csv_path, json_path = lg.save_metrics("csv"), lg.save_metrics("json")
    lg.close()
    back = pd.read_csv(csv_path, float_precision="round_trip")
    assert all(same(v, b) for v, b in zip(profits, back["profit"], strict=True))
    fields = [line.split(",") for line in csv_path.read_text().splitlines()[1:4]]
    assert [f[3] for f in fields] == ["0.0", "-0.0", "5e-324"] and fields[0][1].endswith("+00:00")
    doc = json.loads(json_path.read_text())
    assert doc["source"] == "collector"
    assert all(same(v, r["profit"]) for v, r in zip(profits, doc["episodes"], strict=True))
    assert pd.Timestamp(doc["episodes"][0]["ts"]).tzinfo is not None


def _same_doc(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return same(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_doc(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_doc(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_export_comparison_csv_and_json_keep_every_digit(collector: CollectorProcess, tmp_path: Path) -> None:
    tracker = ExperimentTracker(
        str(tmp_path / "experiments"), config=collector.producer_config(close_timeout=2.0), db=collector.db
    )
    try:
        ids = []
        for k, (lr, profit) in enumerate(
            [(0.1234567891234, 375547.624894), (5e-324, math.inf), (1e-5, math.nan)]
        ):
            exp_id = tracker.create_experiment(f"exp{k}", {"learning_rate": lr, "gamma": 0.99})
            for ep in range(3):
                tracker.log_result(
                    exp_id, episode=ep, profit=profit if ep == 2 else -0.0, sharpe=4.997916666666667
                )
            tracker.complete_experiment(exp_id)
            ids.append(exp_id)
        comparison = tracker.compare_experiments(ids)
        rows = comparison_rows(comparison)
        csv_path = tracker.export_comparison(ids, format="csv")
        json_path = tracker.export_comparison(ids, format="json")
    finally:
        tracker.close()
    back = pd.read_csv(csv_path, keep_default_na=False, na_values=[""], float_precision="round_trip")
    assert list(back.columns) == list(rows[0])
    for name in rows[0]:
        for row, got in zip(rows, back[name], strict=True):
            want = row[name]
            if isinstance(want, float):
                assert same(want, float(got)), (name, want, got)
            elif want is None:
                assert pd.isna(got), name
            else:
                assert str(want) == str(got), name
    assert back["hp_learning_rate"].tolist() == [0.1234567891234, 5e-324, 1e-5]
    assert "375547.624894" in csv_path.read_text()
    assert _same_doc(json.loads(json_path.read_text()), json.loads(json.dumps(comparison)))


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_the_terminal_table_may_round_but_files_do_not(collector: CollectorProcess, fmt: str) -> None:
    table = run_cli("sql", "SELECT 375547.624894::DOUBLE AS x", env=collector.env)
    assert "375548" in table.stdout  # rounded for reading
    out = run_cli("sql", "SELECT 375547.624894::DOUBLE AS x", "--format", fmt, env=collector.env)
    assert "375547.624894" in out.stdout

"""The one CSV/JSON writer (traindash.output): every double reads back bit for bit with pandas.

Each path that writes a file hands its values to one of these functions; the collector-backed
paths are checked end to end in tests/integration/test_output_files.py and
tests/ui/test_sql_download.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
import struct
from collections.abc import Callable
from decimal import Decimal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from traindash import output
from traindash.cli.common import render

SPECIAL = [
    0.0,
    -0.0,
    5e-324,  # smallest subnormal
    -5e-324,
    2.225073858507201e-308,  # largest subnormal
    2.2250738585072014e-308,  # smallest normal
    1.7976931348623157e308,
    -1.7976931348623157e308,
    375547.624894,
    0.1234567891234,
    4.997916666666667,
    1e16,
    1e-5,
    1 / 3,
    2.0**53 + 2,
    math.nan,
    math.inf,
    -math.inf,
]
TOKENS_CSV = {"nan", "inf", "-inf"}
TOKENS_JSON = {"NaN", "Infinity", "-Infinity"}

# Every bit pattern (NaN payloads, subnormals, both zeros), plus hypothesis' own float edge
# cases (huge and tiny exponents) and the hand-picked ones.
doubles = st.one_of(
    st.integers(0, 2**64 - 1).map(lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0]),
    st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True),
    st.sampled_from(SPECIAL),
)
columns = st.lists(doubles, min_size=1, max_size=12)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def same(written: float, read: float) -> bool:
    """Bit for bit, except that every NaN is the one documented token."""
    if math.isnan(written):
        return math.isnan(read)
    return struct.pack("<d", written) == struct.pack("<d", float(read))


def check_csv(values: list[float], text: str) -> None:
    fields = text.splitlines()[1:]
    assert len(fields) == len(values)
    for v, field in zip(values, fields, strict=True):
        if not math.isfinite(v):
            assert field in TOKENS_CSV and field == repr(v)
    back = pd.read_csv(io.StringIO(text), float_precision="round_trip")["x"]
    assert back.dtype == "float64"
    assert all(same(v, b) for v, b in zip(values, back, strict=True)), list(zip(values, back, strict=False))


def check_json_lines(values: list[float], text: str) -> None:
    lines = text.splitlines()
    assert len(lines) == len(values)
    for v, line in zip(values, lines, strict=True):
        field = line.split(": ", 1)[1].rstrip("}")
        if not math.isfinite(v):
            assert field in TOKENS_JSON
        assert same(v, json.loads(line)["x"])
    back = pd.read_json(io.BytesIO(text.encode()), lines=True, engine="pyarrow")["x"]
    assert all(same(v, b) for v, b in zip(values, back, strict=True)), list(zip(values, back, strict=False))


def _render(fmt: str) -> Callable[[pa.Table], str]:
    def write(table: pa.Table) -> str:
        buf = io.StringIO()
        render(table, fmt, buf)
        return buf.getvalue()

    return write


def _write_csv(table: pa.Table) -> str:
    buf = io.StringIO()
    output.write_csv(table, buf)
    return buf.getvalue()


def _write_json_lines(table: pa.Table) -> str:
    buf = io.StringIO()
    output.write_json_lines(table, buf)
    return buf.getvalue()


# traindash sql / export / runs / leaderboard / compare call render; the SQL page calls csv_text.
CSV_TABLE_PATHS = {"write_csv": _write_csv, "csv_text": output.csv_text, "cli render": _render("csv")}
JSON_TABLE_PATHS = {"write_json_lines": _write_json_lines, "cli render": _render("json")}


@pytest.mark.parametrize("path", sorted(CSV_TABLE_PATHS))
@SETTINGS
@given(values=columns)
def test_csv_of_a_table_reads_back_bit_for_bit(path: str, values: list[float]) -> None:
    check_csv(values, CSV_TABLE_PATHS[path](pa.table({"x": pa.array(values, pa.float64())})))


@pytest.mark.parametrize("path", sorted(JSON_TABLE_PATHS))
@SETTINGS
@given(values=columns)
def test_json_lines_of_a_table_read_back_bit_for_bit(path: str, values: list[float]) -> None:
    check_json_lines(values, JSON_TABLE_PATHS[path](pa.table({"x": pa.array(values, pa.float64())})))


@SETTINGS
@given(values=columns)
def test_csv_of_dict_rows_reads_back_bit_for_bit(values: list[float]) -> None:
    """The writer of save_metrics('csv') and export_comparison(..., 'csv')."""
    buf = io.StringIO()
    output.write_csv_rows([{"x": v} for v in values], buf)
    check_csv(values, buf.getvalue())


@SETTINGS
@given(values=columns)
def test_json_documents_read_back_bit_for_bit(values: list[float]) -> None:
    """The writer of save_metrics('json'), save_experiment and export_comparison(..., 'json')."""
    text = output.dumps({"episodes": [{"x": v} for v in values]}, indent=1)
    back = pd.DataFrame(json.loads(text)["episodes"])["x"]
    assert all(same(v, b) for v, b in zip(values, back, strict=True))
    for v in values:
        if not math.isfinite(v):
            assert output.json_cell(v) in TOKENS_JSON and output.json_cell(v) in text


@SETTINGS
@given(values=columns)
def test_cells_are_pythons_shortest_repr(values: list[float]) -> None:
    assert output.csv_cells(pa.array(values, pa.float64())) == [repr(v) for v in values]
    # The per-column fast paths agree with the one-value functions (used for dict rows).
    column = pa.array([*values, None], pa.float64())
    assert output.csv_cells(column) == [output.csv_cell(v) for v in [*values, None]]
    assert output.json_cells(column) == [output.json_cell(v) for v in [*values, None]]
    ints = pa.array([len(values), None, -(2**63)], pa.int64())
    assert output.json_cells(ints) == [output.json_cell(v) for v in ints.to_pylist()]
    assert output.csv_cells(ints) == [output.csv_cell(v) for v in ints.to_pylist()]


def test_the_issue_reproduction() -> None:
    table = pa.table({"x": [375547.624894], "y": [0.1234567891234]})
    assert output.csv_text(table) == "x,y\n375547.624894,0.1234567891234\n"


def test_nan_inf_tokens_and_null() -> None:
    table = pa.table({"x": pa.array([math.nan, math.inf, -math.inf, None, -0.0], pa.float64())})
    assert output.csv_text(table) == 'x\nnan\ninf\n-inf\n""\n-0.0\n'
    assert _write_json_lines(table).splitlines() == [
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"x": null}',
        '{"x": -0.0}',
    ]
    # NULL and NaN stay apart when read as the docs say.
    back = pd.read_csv(
        io.StringIO(output.csv_text(table)),
        keep_default_na=False,
        na_values=[""],
        float_precision="round_trip",
    )["x"]
    assert back.isna().tolist() == [False, False, False, True, False]
    assert math.isnan(back.astype("float64")[0])


def test_integers_timestamps_and_other_types() -> None:
    naive = dt.datetime(2024, 5, 1, 12, 0, 0, 250000)
    table = pa.table(
        {
            "i": pa.array([2**62 + 1, None], pa.int64()),
            "ts": pa.array([naive, None], pa.timestamp("us")),
            "ns": pa.array([1_714_564_800_123_456_789, 0], pa.timestamp("ns")),
            "tz": pa.array([naive, naive], pa.timestamp("us", "America/New_York")),
            "f32": pa.array([0.1, 1e-45], pa.float32()),
            "dec": pa.array([Decimal("0.1234567891234567891234"), None], pa.decimal128(38, 22)),
            "b": [True, False],
            "l": pa.array([[1.5, math.nan], None], pa.list_(pa.float64())),
            "s": ["a,b", ""],
        }
    )
    csv_rows = output.csv_text(table).splitlines()
    assert csv_rows[1] == (
        "4611686018427387905,2024-05-01T12:00:00.250000+00:00,2024-05-01T12:00:00.123456789+00:00,"
        '2024-05-01T12:00:00.250000+00:00,0.1,0.1234567891234567891234,true,"[1.5, NaN]","a,b"'
    )
    assert (
        csv_rows[2] == ",,1970-01-01T00:00:00.000000000+00:00,2024-05-01T12:00:00.250000+00:00,1e-45,,false,,"
    )
    first = json.loads(_write_json_lines(table).splitlines()[0])
    assert first["i"] == 2**62 + 1 and first["ts"] == "2024-05-01T12:00:00.250000+00:00"
    assert first["dec"] == pytest.approx(0.1234567891234567891234) and first["l"][0] == 1.5
    back = pd.read_csv(io.StringIO(output.csv_text(table)), parse_dates=["ts"], float_precision="round_trip")
    assert back["ts"][0] == pd.Timestamp("2024-05-01T12:00:00.25", tz="UTC")
    assert back["i"][0] == 2**62 + 1


def test_naive_datetimes_in_documents_are_utc() -> None:
    when = dt.datetime(2024, 1, 2, 3, 4, 5)
    assert json.loads(output.dumps({"t": when}))["t"] == "2024-01-02T03:04:05.000000+00:00"
    other = dt.datetime(2024, 1, 2, 5, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert output.csv_cell(other) == "2024-01-02T03:04:05.000000+00:00"

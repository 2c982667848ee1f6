"""Scalars from ``MetricsLogger.log``: packing, the wire, and the long table the collector writes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from traindash import wire
from traindash.collector.tables import SCALARS, section_table
from traindash.producer.packing import EPISODE, pack
from traindash.producer.packing import SCALARS as SCALAR_CODE


def _rows(n: int, names: tuple[str, ...] = ("losses/value_loss", "charts/sps")) -> list[tuple]:
    return [
        (SCALAR_CODE, 1000.0 + i, 10 * i, {k: float(i + j) for j, k in enumerate(names)}) for i in range(n)
    ]


def _roundtrip(sections: list[wire.Section], first: int, last: int) -> wire.Batch:
    frames = wire.encode(wire.Batch("run-1", first, last, tuple(sections)))
    msg = wire.decode(frames)
    assert isinstance(msg, wire.Batch)
    return msg


def test_same_names_pack_into_one_section_and_round_trip() -> None:
    sections = pack(_rows(5), 1)
    assert len(sections) == 1
    s = _roundtrip(sections, 1, 5).sections[0]
    assert s.kind is wire.RecordKind.SCALARS
    assert s.names == ("losses/value_loss", "charts/sps")
    assert s.cols["step"].tolist() == [0, 10, 20, 30, 40]
    assert s.cols["v1"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_long_table_has_one_row_per_record_and_name() -> None:
    (section,) = pack(_rows(3), 7)
    table = section_table(SCALARS, "run-1", section, {})[0].to_pylist()
    assert [(r["seq"], r["step"], r["name"], r["value"]) for r in table] == [
        (7, 0, "losses/value_loss", 0.0),
        (7, 0, "charts/sps", 1.0),
        (8, 10, "losses/value_loss", 1.0),
        (8, 10, "charts/sps", 2.0),
        (9, 20, "losses/value_loss", 2.0),
        (9, 20, "charts/sps", 3.0),
    ]
    assert {r["run_id"] for r in table} == {"run-1"}


def test_mixed_records_keep_every_seq_once() -> None:
    rows: list[tuple] = [
        *_rows(2),
        (EPISODE, 1.0, 1, 2.0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, None),
        *_rows(1, ("other",)),
    ]
    batch = _roundtrip(pack(rows, 1), 1, 4)
    seqs = sorted(int(x) for s in batch.sections for x in s.cols["seq"])
    assert seqs == [1, 2, 3, 4]


def test_values_that_are_not_numbers_are_left_out() -> None:
    rows = [
        (SCALAR_CODE, 1.0, 0, {"a": 1, "text": "1.5", "np": np.float32(2.5), "flag": True}),
        (SCALAR_CODE, 2.0, 1, {"a": "x", "text": "y", "np": np.float32(3.5), "flag": False}),
    ]
    (s,) = _roundtrip(pack(rows, 1), 1, 2).sections
    assert s.names == ("a", "np", "flag")
    assert s.cols["v0"][0] == 1.0 and math.isnan(s.cols["v0"][1])
    assert s.cols["v1"].tolist() == [2.5, 3.5]
    assert s.cols["v2"].tolist() == [1.0, 0.0]


def test_nan_and_inf_are_data() -> None:
    (s,) = pack([(SCALAR_CODE, 1.0, 0, {"x": math.nan, "y": math.inf})], 1)
    assert math.isnan(s.cols["v0"][0]) and s.cols["v1"][0] == math.inf


@pytest.mark.parametrize(
    "names, cols",
    [
        ([1], {"v0": "f8"}),  # a name that is not text
        (["a"], {}),  # a name without its column
        (["a"], {"v0": "f8", "v1": "f8"}),  # a column without its name
        (["a" * 300], {"v0": "f8"}),  # too long
    ],
)
def test_malformed_scalars_sections_are_refused(names: list, cols: dict) -> None:
    one = np.array([1], dtype="<i8").tobytes()
    body = {
        "kind": "scalars",
        "names": names,
        "cols": {"seq": ["i8", one], "ts": ["f8", np.array([1.0]).tobytes()], "step": ["i8", one]}
        | {k: ["f8", np.array([1.0]).tobytes()] for k in cols},
    }
    with pytest.raises(wire.WireError):
        wire._unpack_section(body)

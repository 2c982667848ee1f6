"""Wire sections to Arrow tables: merged sections and the custom-column cap."""

from __future__ import annotations

import numpy as np

from traindash.collector.tables import (
    CORE_COLUMNS,
    EPISODES,
    MAX_CUSTOM_COLUMNS,
    merged,
    overflow_scalars,
    section_table,
)
from traindash.wire import RecordKind, Section


def episodes(first: int, n: int, **custom: float) -> Section:
    seqs = np.arange(first, first + n, dtype=np.int64)
    cols: dict = {"seq": seqs, "ts": np.zeros(n), "profit": seqs.astype(np.float64)}
    cols.update({k: np.full(n, v) for k, v in custom.items()})
    return Section(RecordKind.EPISODE, cols)


def test_sections_with_the_same_fields_become_one_with_each_rows_stream() -> None:
    out = merged([("a", episodes(1, 2, x=1.0)), ("b", episodes(1, 3, x=2.0)), ("a", episodes(3, 1, y=3.0))])
    assert len(out) == 2
    streams, section = out[0]
    assert streams.to_pylist() == ["a", "a", "b", "b", "b"]
    assert section.cols["x"].tolist() == [1.0, 1.0, 2.0, 2.0, 2.0]
    assert out[1][0] == "a"  # alone in its group: left as it was
    table, new, overflow = section_table(EPISODES, streams, section, {})
    assert table.column("run_id").to_pylist() == ["a", "a", "b", "b", "b"]
    assert new == {"x": "DOUBLE"} and overflow == []


def test_past_the_cap_custom_names_go_to_the_scalars_table() -> None:
    existing = {name.lower(): name for name in CORE_COLUMNS[EPISODES]}
    existing.update({f"c{i}": f"c{i}" for i in range(MAX_CUSTOM_COLUMNS - 1)})
    table, new, overflow = section_table(EPISODES, "r", episodes(1, 2, c0=5.0, fresh=1.5, late=2.5), existing)
    assert new == {"fresh": "DOUBLE"}  # the last free column
    assert overflow == ["late"]
    assert table.column("c0").to_pylist() == [5.0, 5.0]
    assert "extra" not in table.column_names or table.column("extra").null_count == 2
    long = overflow_scalars(EPISODES, "r", episodes(1, 2, c0=5.0, fresh=1.5, late=2.5), overflow)
    assert long.select(["run_id", "step", "name", "value"]).to_pylist() == [
        {"run_id": "r", "step": seq, "name": "late", "value": 2.5}
        for seq in (1, 2)  # no episode: the seq
    ]


def test_scalars_sections_join_only_with_the_same_names_and_keep_each_rows_run() -> None:
    from traindash.collector.tables import SCALARS, section_table

    def scalars(first: int, names: tuple[str, ...], value: float) -> Section:
        cols: dict = {"seq": np.array([first]), "ts": np.zeros(1), "step": np.array([first])}
        cols.update({f"v{i}": np.array([value + i]) for i in range(len(names))})
        return Section(RecordKind.SCALARS, cols, names)

    items = [
        ("a", scalars(1, ("loss",), 1.0)),
        ("b", scalars(1, ("loss",), 2.0)),
        ("a", scalars(2, ("sps",), 3.0)),
    ]
    rows = []
    for stream, section in merged(items):
        table, _, _ = section_table(SCALARS, stream, section, {})
        rows += table.select(["run_id", "seq", "name", "value"]).to_pylist()
    assert sorted(rows, key=lambda r: (r["run_id"], r["seq"])) == [
        {"run_id": "a", "seq": 1, "name": "loss", "value": 1.0},
        {"run_id": "a", "seq": 2, "name": "sps", "value": 3.0},
        {"run_id": "b", "seq": 1, "name": "loss", "value": 2.0},
    ]

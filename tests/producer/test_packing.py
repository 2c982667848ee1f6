from __future__ import annotations

import math

import numpy as np

from traindash import wire
from traindash.producer.packing import EPISODE, EPISODE_RECORD, MODEL, OTHER, pack, unpack_record
from traindash.wire import RecordKind


def ep(i: int, **kw: object) -> tuple:
    return (EPISODE, 1.7e9 + i, i, float(i), 0.5, 0.6, 1.0, 3, 0.1, 0.001, kw or None)


def test_plain_episodes_pack_into_typed_columns() -> None:
    (section,) = pack([ep(i) for i in range(5)], first_seq=10)
    assert section.kind is RecordKind.EPISODE
    assert section.cols["seq"].tolist() == [10, 11, 12, 13, 14]
    assert section.cols["episode"].dtype == np.int64
    assert section.cols["profit"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_custom_numeric_fields_become_columns_others_go_to_extra() -> None:
    (section,) = pack([ep(i, custom_score=i / 2, note="hi", run_id="x") for i in range(3)], 1)
    assert section.cols["custom_score"].tolist() == [0.0, 0.5, 1.0]
    assert section.cols["extra"][0] == {"note": "hi", "run_id": "x"}


def test_mixed_kinds_keep_one_seq_each_in_log_order() -> None:
    rows = [
        ep(1),
        (MODEL, 1.0, 1, 1, 0.5, np.array([1.0, 3.0]), {"mean": 0.1, "std": 0.2, "norm": 2.0}, None, None),
        (OTHER, 2.0, RecordKind.END, {"status": "finished", "final_metrics": {"a": 1}}),
        ep(2, custom=1.0),
    ]
    sections = pack(rows, 1)
    by_kind = {(s.kind, tuple(s.cols)): s for s in sections}
    got = sorted(int(x) for s in sections for x in s.cols["seq"])
    assert got == [1, 2, 3, 4]
    model = next(s for s in sections if s.kind is RecordKind.MODEL)
    assert model.cols["q_mean"].tolist() == [2.0] and model.cols["grad_norm"].tolist() == [2.0]
    assert model.cols["q_values"] == [[1.0, 3.0]]
    assert len(by_kind) == 4
    # everything survives the wire
    msg = wire.decode(wire.encode(wire.Batch("r", 1, 4, tuple(sections))))
    assert isinstance(msg, wire.Batch) and len(msg.sections) == 4


def test_odd_values_never_cost_rows() -> None:
    class Weird:
        def __float__(self) -> float:
            raise ValueError("no")

    rows = [
        ep(1),
        (EPISODE, 1.0, 2, Weird(), 0.5, 0.6, 1.0, 3, 0.1, 0.001, {"obj": Weird()}),
        (MODEL, 1.0, 1, None, float("nan"), np.array([np.inf, 1.0]), None, None, None),
    ]
    sections = pack(rows, 1)
    assert sorted(int(x) for s in sections for x in s.cols["seq"]) == [1, 2, 3]
    wire.encode(wire.Batch("r", 1, 3, tuple(sections)))
    profits = [v for s in sections if "profit" in s.cols for v in list(s.cols["profit"])]
    assert any(isinstance(v, float) and math.isnan(v) for v in profits)


def test_logger_keeps_odd_gradients_instead_of_raising(tmp_path) -> None:
    from tests.harness import free_endpoints
    from traindash.config import ProducerConfig
    from traindash.producer import MetricsLogger

    lg = MetricsLogger(
        "odd", output_dir=str(tmp_path), config=ProducerConfig(endpoints=free_endpoints(), close_timeout=0.1)
    )
    lg.log_model_metrics(loss=0.5, q_values=..., gradients=..., weights=[1, 2])
    lg.log_model_metrics(loss="high", q_values=[[1.0, 2.0], [3.0, 4.0]])
    assert lg.get_statistics()["total_model_updates"] == 2
    lg.close(timeout=0.1)


def rec(i: int) -> bytes:
    return EPISODE_RECORD.pack(1.7e9 + i, i, float(i), 0.5, 0.6, 1.0, 3, 0.1, 0.001)


def test_packed_episode_records_read_back_as_typed_columns() -> None:
    (section,) = pack([rec(i) for i in range(4)], first_seq=7)
    assert section.cols["seq"].tolist() == [7, 8, 9, 10]
    assert section.cols["episode"].tolist() == [0, 1, 2, 3]
    assert section.cols["profit"].tolist() == [0.0, 1.0, 2.0, 3.0]
    msg = wire.decode(wire.encode(wire.Batch("r", 7, 10, (section,))))
    assert isinstance(msg, wire.Batch)
    (got,) = msg.sections
    assert got.cols["episode"].dtype == np.int64 and got.cols["ts"].tolist()[0] == 1.7e9


def test_records_and_tuples_in_one_batch_keep_log_order_seqs() -> None:
    rows = [
        rec(1),
        ep(2, custom=1.0),
        rec(3),
        (MODEL, 1.0, 1, 3, 0.5, np.array([1.0, 3.0]), None, None, None),
        rec(4),
    ]
    sections = pack(rows, 100)
    seq_of = {}
    for s in sections:
        names = s.cols.get("episode", [None] * len(s))
        for seq, episode in zip(s.cols["seq"].tolist(), list(names), strict=True):
            seq_of[seq] = (s.kind, int(episode))
    assert seq_of == {
        100: (RecordKind.EPISODE, 1),
        101: (RecordKind.EPISODE, 2),
        102: (RecordKind.EPISODE, 3),
        103: (RecordKind.MODEL, 3),
        104: (RecordKind.EPISODE, 4),
    }
    assert unpack_record(rec(5))[:3] == (EPISODE, 1.7e9 + 5, 5)


def test_logger_queues_plain_episodes_packed_and_odd_ones_as_tuples(tmp_path) -> None:
    from tests.harness import free_endpoints
    from traindash.config import ProducerConfig
    from traindash.producer import MetricsLogger

    lg = MetricsLogger(
        "rec",
        output_dir=str(tmp_path),
        buffer_size=10**6,
        config=ProducerConfig(endpoints=free_endpoints(), close_timeout=0.1, flush_interval=60),
    )
    try:
        lg.flush(timeout=0.1)
        with lg._sender.pack_lock:  # the sender cannot drain the queue meanwhile
            queued = lg._queue
            lg.log_episode(1, 2.5, num_trades=np.int64(4))
            lg.log_episode(2.0, 1.0)  # a float episode number is not an int64 record
            lg.log_episode(3, "n/a")
            lg.log_episode(4, 1.0, custom=2)
            assert [type(r) for r in queued][-4:] == [bytes, tuple, tuple, tuple]
        assert lg.get_statistics()["total_episodes"] == 4
        assert lg.get_statistics()["best_profit"] == 2.5
    finally:
        lg.close(timeout=0.1)


def test_q_values_queued_as_tuples_are_summarised_like_arrays() -> None:
    def model(q: object) -> tuple:
        return (MODEL, 1.0, 1, 1, 0.5, q, None, None, None)

    (same,) = pack([model((1.0, 3.0)), model((2.0, 2.0))], 1)
    assert same.cols["q_mean"].tolist() == [2.0, 2.0]
    assert same.cols["q_std"].tolist() == [1.0, 0.0]
    assert same.cols["q_values"] == [[1.0, 3.0], [2.0, 2.0]]
    (ragged,) = pack([model((1.0, 3.0)), model(([1.0, 2.0], [3.0, 4.0])), model(())], 1)
    assert ragged.cols["q_max"].tolist()[:2] == [3.0, 4.0]
    assert math.isnan(ragged.cols["q_mean"][2])
    assert ragged.cols["q_values"] == [[1.0, 3.0], [1.0, 2.0, 3.0, 4.0], []]

"""Custom rule conditions are parsed with ast and checked; nothing is eval'd."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from traindash.alerts.expr import UnsafeExpression, parse


@pytest.mark.parametrize(
    "text,metrics,expected",
    [
        ("drawdown > 300 and win_rate < 0.4", {"drawdown": 301, "win_rate": 0.3}, True),
        ("drawdown > 300 and win_rate < 0.4", {"drawdown": 300, "win_rate": 0.3}, False),
        ("not (profit >= 0) or sharpe < -1", {"profit": -1, "sharpe": 0}, True),
        ("(profit - 10) * 2 / 4 % 7 == 2.5 ** 1", {"profit": 15}, True),
        ("0 < epsilon <= 0.1", {"epsilon": 0.05}, True),
        ("-loss < -5", {"loss": 6}, True),
        ("loss > 5", {}, False),  # missing metric: the rule does not hold
        ("loss > 5", {"loss": None}, False),
        ("loss != loss", {"loss": math.nan}, True),  # the NaN idiom works
        ("loss == inf", {"loss": math.inf}, True),
        ("profit / 0 > 1", {"profit": 1}, False),  # arithmetic errors: does not hold
        ("2 ** 1000 > loss", {"loss": 1}, False),  # huge powers refused at evaluation
    ],
)
def test_conditions(text, metrics, expected):
    assert parse(text).evaluate(metrics) is expected


def test_names():
    assert parse("drawdown > 300 and win_rate < nan").names == {"drawdown", "win_rate"}


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd')",
        "profit.__class__",
        "metrics['profit'] > 1",
        "'a' == 'a'",
        "lambda: 1",
        "[x for x in (1, 2)]",
        "profit if loss else sharpe",
        "profit in (1, 2)",
        "profit is None",
        "(x := 3) > 1",
        "_secret > 1",
        "profit > 1; import os",
        "",
        "1 +",
        "f'{profit}' > 0",
        "profit & 1",
        "+".join(["1"] * 300),
    ],
)
def test_unsafe_or_malformed_expressions_are_refused(text):
    with pytest.raises(UnsafeExpression):
        parse(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_any_text_parses_safely_or_is_refused(text):
    try:
        cond = parse(text)
    except UnsafeExpression:
        return
    assert isinstance(cond.evaluate({n: 1.5 for n in cond.names}), bool)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["profit", "loss", "drawdown", "win_rate"]),
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True), st.none(), st.text(max_size=3), st.integers()
        ),
    )
)
def test_evaluation_never_raises(metrics):
    cond = parse("(profit - loss) / drawdown > win_rate ** 2 or not loss % 3 == 1")
    assert isinstance(cond.evaluate(metrics), bool)

"""Safe conditions for custom alert rules, such as ``drawdown > 300 and win_rate < 0.4``.

The text is parsed with :mod:`ast` and checked against a small grammar: comparisons,
``and``/``or``/``not``, ``+ - * / % **`` and unary minus, metric names and numbers (plus
``nan``/``inf``/``true``/``false``). Anything else (calls, attributes, subscripts, strings,
lambdas, comprehensions...) is refused when the rule is loaded. Evaluation walks the tree
itself; nothing is ever passed to ``eval`` or ``compile``.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_LENGTH = 500
MAX_NODES = 200

_CONSTANTS = {"nan": math.nan, "inf": math.inf, "true": True, "false": False}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_CMPOPS: dict[type, Callable[[Any, Any], bool]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ALLOWED = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Compare,
    ast.Name,
    ast.Load,
    ast.Constant,
    *_BINOPS,
    *_CMPOPS,
)


class UnsafeExpression(ValueError):
    """The condition uses something outside the allowed grammar (or does not parse)."""


class _Missing(Exception):
    pass


@dataclass(frozen=True)
class Condition:
    """A parsed, checked condition; call :meth:`evaluate` with a run's metrics."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, metrics: Mapping[str, Any]) -> bool:
        """True when the condition holds; False when a metric it names is missing or not a number."""
        try:
            return bool(_eval(self.tree.body, metrics))
        except (_Missing, ArithmeticError, TypeError, ValueError):
            return False


def parse(text: str) -> Condition:
    """Parse and check a condition; raises :class:`UnsafeExpression` for anything not allowed."""
    if not isinstance(text, str) or not text.strip():
        raise UnsafeExpression("empty condition")
    if len(text) > MAX_LENGTH:
        raise UnsafeExpression(f"condition longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"condition does not parse: {exc.msg}") from None
    names: set[str] = set()
    count = 0
    for node in ast.walk(tree):
        count += 1
        if not isinstance(node, _ALLOWED):
            raise UnsafeExpression(f"{type(node).__name__} is not allowed in a condition: {text!r}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float)):
            raise UnsafeExpression(f"only numbers are allowed as constants: {node.value!r}")
        if isinstance(node, ast.Name):
            if node.id.startswith("_"):
                raise UnsafeExpression(f"name {node.id!r} is not allowed")
            if node.id not in _CONSTANTS:
                names.add(node.id)
    if count > MAX_NODES:
        raise UnsafeExpression(f"condition is too complex ({count} nodes)")
    return Condition(text=text.strip(), tree=tree, names=frozenset(names))


def _number(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        raise _Missing
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        raise _Missing from None


def _eval(node: ast.AST, metrics: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            return all(_eval(v, metrics) for v in node.values)
        return any(_eval(v, metrics) for v in node.values)
    if isinstance(node, ast.UnaryOp):
        value = _eval(node.operand, metrics)
        if isinstance(node.op, ast.Not):
            return not value
        return -value if isinstance(node.op, ast.USub) else +value
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, metrics), _eval(node.right, metrics)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ArithmeticError("exponent too large")
        return _BINOPS[type(node.op)](left, right)
    if isinstance(node, ast.Compare):
        left = _eval(node.left, metrics)
        for op, comp in zip(node.ops, node.comparators, strict=True):
            right = _eval(comp, metrics)
            if not _CMPOPS[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id not in metrics:
            raise _Missing
        return _number(metrics[node.id])
    if isinstance(node, ast.Constant):
        return node.value
    raise UnsafeExpression(type(node).__name__)  # unreachable: parse() checked the tree

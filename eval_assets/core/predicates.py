"""Slice predicates such as ``amount > 10000 and merchant_category in [electronics, travel]``.

A predicate is parsed with Python's own parser into a syntax tree and then checked against a small
whitelist; it is never evaluated. Only a column compared with literals, combined with ``and``,
``or``, ``not`` and parentheses, is accepted. A bare word on the right-hand side or inside a list
is a string literal, so ``country == US`` and ``merchant_category in [electronics, travel]`` read
as a person would write them.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

MAX_PREDICATE_LENGTH = 2000

_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


class PredicateError(ValueError):
    """A predicate that is not a column compared with literals."""


@dataclass(frozen=True)
class Comparison:
    column: str
    op: str
    value: Any  # a scalar, or a tuple of scalars for `in` / `not in`


@dataclass(frozen=True)
class BoolOp:
    op: str  # "and" | "or"
    operands: tuple[Predicate, ...]


@dataclass(frozen=True)
class Not:
    operand: Predicate


Predicate = Comparison | BoolOp | Not


def parse_predicate(text: str) -> Predicate:
    """Parse a predicate string into a tree, or raise PredicateError saying what is wrong."""
    if not isinstance(text, str) or not text.strip():
        raise PredicateError("a predicate must be a non-empty string")
    if len(text) > MAX_PREDICATE_LENGTH:
        raise PredicateError(f"a predicate is limited to {MAX_PREDICATE_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise PredicateError(f"cannot parse {text!r}: {exc.msg}") from None
    return _convert(tree.body, text)


def predicate_columns(predicate: Predicate) -> set[str]:
    """Every column a predicate reads."""
    if isinstance(predicate, Comparison):
        return {predicate.column}
    if isinstance(predicate, Not):
        return predicate_columns(predicate.operand)
    return set().union(*(predicate_columns(p) for p in predicate.operands))


def evaluate_predicate(predicate: Predicate, frame: pd.DataFrame) -> np.ndarray:
    """Boolean row mask of `frame` where the predicate holds; missing values never match."""
    if isinstance(predicate, Not):
        return ~evaluate_predicate(predicate.operand, frame)
    if isinstance(predicate, BoolOp):
        masks = [evaluate_predicate(p, frame) for p in predicate.operands]
        combine = np.logical_and if predicate.op == "and" else np.logical_or
        return combine.reduce(masks)
    column = frame[predicate.column]
    op, value = predicate.op, predicate.value
    if op in ("in", "not in"):
        mask = column.isin(list(value)).to_numpy()
        return ~mask & column.notna().to_numpy() if op == "not in" else mask
    try:
        result = {
            "==": column.__eq__,
            "!=": column.__ne__,
            "<": column.__lt__,
            "<=": column.__le__,
            ">": column.__gt__,
            ">=": column.__ge__,
        }[op](value)
    except TypeError:
        raise PredicateError(
            f"column {predicate.column!r} (dtype {column.dtype}) cannot be compared with "
            f"{value!r} using {op}"
        ) from None
    return (result & column.notna()).to_numpy(dtype=bool)


def _convert(node: ast.AST, text: str) -> Predicate:
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return BoolOp(op, tuple(_convert(v, text) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_convert(node.operand, text))
    if isinstance(node, ast.Compare):
        if len(node.ops) != 1:
            raise PredicateError(
                f"in {text!r}: chained comparisons are not supported; join them with 'and'"
            )
        if not isinstance(node.left, ast.Name):
            raise PredicateError(
                f"in {text!r}: the left side of a comparison must be a column name, "
                f"not {ast.unparse(node.left)!r}"
            )
        op = _COMPARISONS.get(type(node.ops[0]))
        if op is None:
            raise PredicateError(f"in {text!r}: operator {type(node.ops[0]).__name__} is not allowed")
        right = node.comparators[0]
        if op in ("in", "not in"):
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                raise PredicateError(f"in {text!r}: '{op}' needs a list such as [a, b]")
            value: Any = tuple(_literal(e, text) for e in right.elts)
        else:
            value = _literal(right, text)
        return Comparison(node.left.id, op, value)
    raise PredicateError(
        f"in {text!r}: {ast.unparse(node)!r} is not a comparison of a column with a value "
        "(allowed: column OP value, column in [a, b], and, or, not, parentheses)"
    )


def _literal(node: ast.AST, text: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
        return node.value
    if isinstance(node, ast.Name):
        return node.id
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
    ):
        return -node.operand.value
    raise PredicateError(
        f"in {text!r}: {ast.unparse(node)!r} is not a literal value (numbers, quoted or bare words)"
    )

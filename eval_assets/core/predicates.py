"""Slice predicates such as ``amount > 10000 and merchant_category in [electronics, travel]``.

A predicate is parsed with Python's own parser into a syntax tree and then checked against a small
whitelist; it is never evaluated. Only a column compared with literals, combined with ``and``,
``or``, ``not`` and parentheses, is accepted. A bare word on the right-hand side or inside a list
is a string literal, so ``country == US`` and ``merchant_category in [electronics, travel]`` read
as a person would write them.

Missing values never match: a comparison on a missing value is unknown, and unknown stays unknown
through ``not`` (three-valued logic, as in SQL), so ``not (country == US)`` does not select rows
whose country is missing.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
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


def parse_predicate(text: str, columns: Collection[str] | None = None) -> Predicate:
    """Parse a predicate string into a tree, or raise PredicateError saying what is wrong.

    With `columns` (the known column names), a bare word on the right-hand side that names a
    column is refused: comparing two columns is not supported, and reading the word as text would
    silently select nothing. Quote it to mean the text.
    """
    if not isinstance(text, str) or not text.strip():
        raise PredicateError("a predicate must be a non-empty string")
    if len(text) > MAX_PREDICATE_LENGTH:
        raise PredicateError(f"a predicate is limited to {MAX_PREDICATE_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise PredicateError(f"cannot parse {text!r}: {exc.msg}") from None
    return _convert(tree.body, text, frozenset(columns or ()))


def predicate_columns(predicate: Predicate) -> set[str]:
    """Every column a predicate reads."""
    if isinstance(predicate, Comparison):
        return {predicate.column}
    if isinstance(predicate, Not):
        return predicate_columns(predicate.operand)
    return set().union(*(predicate_columns(p) for p in predicate.operands))


def evaluate_predicate(predicate: Predicate, frame: pd.DataFrame) -> np.ndarray:
    """Boolean row mask of `frame` where the predicate holds; missing values never match."""
    holds, _ = _truth(predicate, frame)
    return holds


def _truth(predicate: Predicate, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(rows where the predicate is true, rows where it is false); the rest are unknown."""
    if isinstance(predicate, Not):
        holds, fails = _truth(predicate.operand, frame)
        return fails, holds
    if isinstance(predicate, BoolOp):
        parts = [_truth(p, frame) for p in predicate.operands]
        trues = [t for t, _ in parts]
        falses = [f for _, f in parts]
        if predicate.op == "and":
            return np.logical_and.reduce(trues), np.logical_or.reduce(falses)
        return np.logical_or.reduce(trues), np.logical_and.reduce(falses)
    if predicate.column not in frame.columns:
        raise PredicateError(f"column {predicate.column!r} is not in the data")
    column = frame[predicate.column]
    numpy_op = _NUMPY_COMPARISONS.get(predicate.op)
    if (
        numpy_op
        and _plain_number(column.dtype)
        and _plain_number(np.asarray(predicate.value).dtype)
    ):
        # A number column against a number, in numpy: the pandas path's result for a fifth of
        # its time (missing values are NaN here, where every comparison is false but !=).
        values = column.to_numpy()
        with np.errstate(invalid="ignore"):
            mask = numpy_op(values, predicate.value)
        if values.dtype.kind != "f":
            return mask, ~mask
        known = ~np.isnan(values)
        return mask & known, ~mask & known
    known = column.notna().to_numpy(dtype=bool)
    mask = _compare(predicate, column)
    return mask & known, ~mask & known


_NUMPY_COMPARISONS = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
}


def _plain_number(dtype: Any) -> bool:
    """An integer or floating numpy dtype (not bool, not pandas' nullable or Arrow types)."""
    return isinstance(dtype, np.dtype) and dtype.kind in "iuf"


def _compare(predicate: Comparison, column: pd.Series) -> np.ndarray:
    if isinstance(column.dtype, pd.CategoricalDtype):
        # Compare the few categories, then look rows up by code (-1, missing, never matches);
        # this also orders text categories as plain text would be.
        on_categories = _compare(predicate, pd.Series(column.cat.categories))
        codes = column.cat.codes.to_numpy()
        return np.where(codes >= 0, on_categories[codes], False)
    op, value = predicate.op, predicate.value
    if op in ("in", "not in"):
        mask = column.isin(list(value)).to_numpy(dtype=bool)
        return ~mask if op == "not in" else mask
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
    return result.fillna(False).to_numpy(dtype=bool)


def _convert(node: ast.AST, text: str, columns: frozenset[str]) -> Predicate:
    if isinstance(node, ast.BoolOp):
        op = "and" if isinstance(node.op, ast.And) else "or"
        return BoolOp(op, tuple(_convert(v, text, columns) for v in node.values))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return Not(_convert(node.operand, text, columns))
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
            name = type(node.ops[0]).__name__
            raise PredicateError(f"in {text!r}: operator {name} is not allowed")
        right = node.comparators[0]
        if op in ("in", "not in"):
            if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                raise PredicateError(f"in {text!r}: '{op}' needs a list such as [a, b]")
            elements = list(right.elts)
        else:
            elements = [right]
        for element in elements:
            if isinstance(element, ast.Name) and (
                element.id in columns or element.id == node.left.id
            ):
                raise PredicateError(
                    f"in {text!r}: {element.id!r} is a column; a column can only be compared "
                    f"with literal values, not with another column (write '{element.id}' in "
                    "quotes to mean the text)"
                )
        literals = tuple(_literal(e, text) for e in elements)
        value: Any = literals if op in ("in", "not in") else literals[0]
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

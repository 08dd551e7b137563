"""Slices: named boolean row masks over one evaluation dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from eval_assets.core.predicates import evaluate_predicate, parse_predicate

if TYPE_CHECKING:
    from eval_assets.core.criteria import Criteria, PredicateSlice, ValueSlices

OVERALL = "overall"


@dataclass(frozen=True, eq=False)
class Slice:
    """One named subset of the evaluation rows.

    `mask` is a boolean array as long as the dataset. `key` marks slices the change gates guard by
    default; `kind` says where the slice came from (``overall``, ``predicate``, ``value``).
    """

    name: str
    mask: np.ndarray
    key: bool = False
    kind: str = "predicate"

    @property
    def support(self) -> int:
        return int(np.count_nonzero(self.mask))


def build_slices(frame: pd.DataFrame, criteria: Criteria) -> list[Slice]:
    """The overall slice, then each declared slice; value slices expand to ``column=value``."""
    from eval_assets.core.criteria import PredicateSlice

    slices = [Slice(OVERALL, np.ones(len(frame), dtype=bool), key=True, kind="overall")]
    for spec in criteria.slices:
        if isinstance(spec, PredicateSlice):
            mask = evaluate_predicate(parse_predicate(spec.where), frame)
            slices.append(Slice(spec.name, mask, key=spec.key, kind="predicate"))
            continue
        column = frame[spec.by]
        codes, uniques = pd.factorize(column, sort=True)
        for code, value in enumerate(uniques):
            name = f"{spec.by}={value_text(value)}"
            slices.append(Slice(name, codes == code, key=spec.key, kind="value"))
    return slices


def value_text(value: object) -> str:
    """A column value as it appears in a slice name: 3, not 3.0 (a column with NaN is float)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def expected_slice_names(criteria: Criteria) -> list[str]:
    """Slice names the criteria promise whatever the data: their absence is a missing slice."""
    from eval_assets.core.criteria import PredicateSlice

    names = [OVERALL]
    for spec in criteria.slices:
        if isinstance(spec, PredicateSlice):
            names.append(spec.name)
        elif spec.expected_values:
            names += [f"{spec.by}={v}" for v in spec.expected_values]
    return names


def select_slices(selector: str | list[str], criteria: Criteria, present: list[str]) -> list[str]:
    """Slice names a gate covers: declared ones are always listed, so an absent one shows up."""
    if selector == "all":
        groups = [OVERALL] + [_spec_name(s) for s in criteria.slices]
    elif selector == "key":
        groups = criteria.key_slices
    else:
        groups = list(selector)
    expected = expected_slice_names(criteria)
    names: list[str] = []
    for group in groups:
        members = [n for n in present if n == group or n.split("=", 1)[0] == group and "=" in n]
        members += [n for n in expected if n.split("=", 1)[0] == group and n not in members]
        names += members or [group]
    return list(dict.fromkeys(names))


def _spec_name(spec: PredicateSlice | ValueSlices) -> str:
    return getattr(spec, "name", None) or spec.by

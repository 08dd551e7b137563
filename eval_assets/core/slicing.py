"""Slices: named boolean row masks over one evaluation dataset."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from eval_assets.core.criteria import Criteria, PredicateSlice, ValueSlices
from eval_assets.core.predicates import evaluate_predicate, parse_predicate
from eval_assets.core.vocabulary import OVERALL


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


@dataclass(frozen=True)
class SlicePlan:
    """The slices and fairness groups of one dataset, fixed before its rows are read in batches.

    Value slices and fairness groups depend on which values occur anywhere in the data, so they
    are found first (`plan_slices`, one pass over the few columns they read); each batch then
    maps to the same slice numbering (`members`) and group numbering (`group_codes`).
    """

    criteria: Criteria
    values: dict[str, pd.Index]
    groups: dict[str, np.ndarray]

    @property
    def slices(self) -> list[tuple[str, bool, str]]:
        """(name, key, kind) of every slice, in table order."""
        out = [(OVERALL, True, "overall")]
        for spec in self.criteria.slices:
            if isinstance(spec, PredicateSlice):
                out.append((spec.name, spec.key, "predicate"))
            else:
                out += [
                    (f"{spec.by}={value_text(v)}", spec.key, "value") for v in self.values[spec.by]
                ]
        return out

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.slices]

    def members(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows x slices boolean membership (column-major: one slice's rows are contiguous)."""
        return unpack_slices(self.bits(frame), len(self.slices))

    def bits(self, frame: pd.DataFrame) -> np.ndarray:
        """Slice membership as bit sets, bytes x rows: byte k holds slices 8k to 8k + 7, lowest
        bit first (the streamed evaluation sorts and counts these). Made directly, without rows x
        slices booleans: a value slice's bit is looked up by the row's value code, one look-up
        per byte that a column's values span."""
        out = np.zeros((slice_bytes(len(self.slices)), len(frame)), dtype=np.uint8)
        out[0] |= 1  # the overall slice
        j = 1
        for spec in self.criteria.slices:
            if isinstance(spec, PredicateSlice):
                holds = evaluate_predicate(parse_predicate(spec.where), frame)
                out[j // 8] |= holds.view(np.uint8) << (j % 8)
                j += 1
                continue
            values = self.values[spec.by]
            column = frame[spec.by].array
            if isinstance(column, pd.Categorical):
                # Rows are looked up by category code, through each category's value position.
                by_category = values.get_indexer(column.categories)
                codes = column.codes.astype(np.intp)  # an intp index gathers 3x faster
            else:
                by_category, codes = None, _codes_in(column, values)
            positions = j + np.arange(len(values))
            for byte in np.unique(positions // 8):
                # Each value's bit in this byte; the last entry, for -1 (missing), is none.
                lookup = np.zeros(len(values) + 1, dtype=np.uint8)
                here = positions // 8 == byte
                lookup[:-1][here] = np.left_shift(1, positions[here] % 8)
                if by_category is not None:
                    lookup = np.append(lookup[by_category], np.uint8(0))
                out[byte] |= lookup[codes]
            j += len(values)
        return out

    def group_codes(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Each fairness attribute's group per row, as an index into `groups[attribute]`."""
        codes = {}
        for attribute, groups in fairness_groups(self.criteria, frame).items():
            known = pd.Index(self.groups[attribute])
            code = _codes_in(pd.Series(groups), known)
            unknown = np.flatnonzero(code < 0)
            if len(unknown):
                value = np.asarray(groups, dtype=object)[unknown[0]]
                raise ValueError(
                    f"fairness attribute {attribute!r}: group {value!r} (row {unknown[0]} of this "
                    "batch) was not in the rows the slice plan was made from"
                )
            codes[attribute] = code
        return codes


def slice_bytes(n_slices: int) -> int:
    """Bytes per row of `SlicePlan.bits` for this many slices (at least one)."""
    return max(1, -(-n_slices // 8))


def unpack_slices(bits: np.ndarray, n_slices: int) -> np.ndarray:
    """Bytes x rows bit sets (`SlicePlan.bits`) as rows x slices booleans (column-major)."""
    members = np.empty((bits.shape[1], n_slices), dtype=bool, order="F")
    for j in range(n_slices):
        np.not_equal(bits[j // 8] & np.uint8(1 << (j % 8)), 0, out=members[:, j])
    return members


def plan_slices(criteria: Criteria, frames: Iterable[pd.DataFrame]) -> SlicePlan:
    """The slice plan of a dataset read as `frames` (only value-slice and fairness columns are
    needed): value slices in sorted value order, fairness groups sorted, as `build_slices` and
    `binary.group_codes` order them for the whole column at once."""
    by = list(dict.fromkeys(s.by for s in criteria.slices if not isinstance(s, PredicateSlice)))
    seen: dict[str, list[np.ndarray]] = {column: [] for column in by}
    groups: dict[str, set[str]] = {attribute: set() for attribute in criteria.fairness}
    for frame in frames:
        for column in by:
            seen[column].append(np.asarray(_distinct(frame[column].array)))
        for attribute, values in fairness_groups(criteria, frame).items():
            groups[attribute].update(_distinct(values))
    values = {}
    for column, parts in seen.items():
        together = np.concatenate(parts) if parts else np.array([], dtype=object)
        values[column] = pd.Index(pd.factorize(together, sort=True)[1])
    return SlicePlan(
        criteria,
        values,
        {a: np.asarray(sorted(g), dtype=object) for a, g in groups.items()},
    )


def build_slices(frame: pd.DataFrame, criteria: Criteria) -> list[Slice]:
    """The overall slice, then each declared slice; value slices expand to ``column=value``."""
    plan = plan_slices(criteria, [frame])
    members = plan.members(frame)
    return [
        Slice(name, members[:, j], key=key, kind=kind)
        for j, (name, key, kind) in enumerate(plan.slices)
    ]


def fairness_groups(criteria: Criteria, frame: pd.DataFrame) -> dict[str, Any]:
    """Each fairness attribute's group per row, as text; a missing text value is the group "None",
    as `astype(str)` names it. Text kept as categories stays a Categorical (codes, not a string
    per row), which the core reads exactly as it would read the strings."""
    groups: dict[str, Any] = {}
    for attribute in criteria.fairness:
        column = frame[attribute]
        if isinstance(column.dtype, pd.CategoricalDtype):
            values = column.array.rename_categories(column.cat.categories.astype(str))
            if values.isna().any():
                if "None" not in values.categories:
                    values = values.add_categories(["None"])
                values = values.fillna("None")
            groups[attribute] = values
        else:
            groups[attribute] = column.astype(str).to_numpy()
    return groups


def _distinct(values: Any) -> Any:
    """The distinct values of a column part (a Categorical's from its codes, no hashing)."""
    if isinstance(values, pd.Categorical):
        used = np.bincount(values.codes + 1, minlength=len(values.categories) + 1)[1:]
        return values.categories[np.flatnonzero(used)]
    return pd.unique(pd.Series(values))


def _codes_in(column: pd.Series | pd.Categorical, values: pd.Index) -> np.ndarray:
    """Each row's position in `values` (-1 for a missing value or one not in `values`)."""
    if isinstance(column, pd.Series):
        column = column.array
    if isinstance(column, pd.Categorical):
        # Look the few categories up, then rows by code; -1 (missing) stays -1.
        lookup = np.append(values.get_indexer(column.categories), -1)
        return lookup[column.codes.astype(np.intp)]  # an intp index gathers 3x faster
    return values.get_indexer(column)


def value_text(value: object) -> str:
    """A column value as it appears in a slice name: 3, not 3.0 (a column with NaN is float)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def expected_slice_names(criteria: Criteria) -> list[str]:
    """Slice names the criteria promise whatever the data: their absence is a missing slice."""
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
    columns = value_columns(criteria)
    expected = expected_slice_names(criteria)
    names: list[str] = []
    for group in groups:
        members = [n for n in present if in_group(n, group, columns)]
        members += [n for n in expected if in_group(n, group, columns) and n not in members]
        names += members or [group]
    return list(dict.fromkeys(names))


def value_columns(criteria: Criteria) -> set[str]:
    """The columns of the criteria's value slices."""
    return {s.by for s in criteria.slices if isinstance(s, ValueSlices)}


def in_group(name: str, group: str, columns: Collection[str]) -> bool:
    """Whether slice `name` is `group` itself or, when `group` is one of the value-slice
    `columns`, one of its ``column=value`` slices.

    The column is matched whole, as a prefix: a column name may hold ``=`` itself (``a=b`` gives
    ``a=b=x``), so splitting at the first ``=`` would find no slice of it. The criteria refuse
    two value columns where one is the other plus ``=...``, so the match is never ambiguous.
    """
    return name == group or (group in columns and name.startswith(f"{group}="))


def _spec_name(spec: PredicateSlice | ValueSlices) -> str:
    return getattr(spec, "name", None) or spec.by

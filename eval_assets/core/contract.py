"""Reading an evaluation dataset and validating it against the dataset contract.

Every error names the file, the column and an offending value with its row, so the person who
owns the data can fix it without a debugger.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from eval_assets.core.criteria import DatasetContract
from eval_assets.core.digests import handle_digest

# Columns, rows and values an error names before it says how many more there are: a file with
# 10,000 unexpected columns gets a readable error, not 10,000 lines.
MAX_SHOWN = 3
# Problems (one line each) an error lists before it says how many more there are.
MAX_PROBLEMS = 10
# Characters of a cell value shown: a cell can hold a megabyte of text.
MAX_VALUE_CHARS = 60


class DatasetError(ValueError):
    """A dataset that breaks its contract; the message lists the first problems, then a count.

    `problems` keeps every problem, for callers that want them all.
    """

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {p}" for p in problems[:MAX_PROBLEMS]]
        if len(problems) > MAX_PROBLEMS:
            lines.append(f"{source}: and {len(problems) - MAX_PROBLEMS:,} more problems")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class ValidatedDataset:
    """Rows that met the contract, with the resolved feature list and 0/1 labels."""

    frame: pd.DataFrame
    features: list[str]
    labels: np.ndarray  # int8, 1 for the positive class
    source: str


def read_table(path: str | Path) -> pd.DataFrame:
    """Read CSV or Parquet; unreadable or non-UTF-8 files raise DatasetError naming the file."""
    return read_hashed_table(path)[0]


def read_hashed_table(path: str | Path) -> tuple[pd.DataFrame, str]:
    """`read_table`, with the SHA-256 of the very bytes the frame was parsed from (hashed through
    the handle that is then read: a file replaced in between cannot be recorded for another)."""
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise DatasetError(source, ["file does not exist"])
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv", ".txt"):
        raise DatasetError(source, [f"unsupported data format {suffix!r}; use .csv or .parquet"])
    try:
        with open(path, "rb") as handle:
            digest = handle_digest(handle)
            if suffix in (".parquet", ".pq"):
                return pd.read_parquet(handle), digest
            frame = pd.read_csv(
                handle, encoding="utf-8", encoding_errors="strict", low_memory=False
            )
            return frame, digest
    except UnicodeDecodeError:
        # pandas reports the offset inside its own buffer; find the byte in the file instead.
        raise DatasetError(source, [f"not valid UTF-8 text: {_first_invalid_utf8(path)}"]) from None
    except pd.errors.EmptyDataError:
        raise DatasetError(source, ["the file is empty: no header and no rows"]) from None
    except (pd.errors.ParserError, OSError, ValueError) as exc:
        raise DatasetError(source, [f"cannot be read as {suffix[1:]}: {exc}"]) from None


def validate_dataset(
    frame: pd.DataFrame,
    contract: DatasetContract,
    source: str,
    *,
    required_columns: Iterable[str] = (),
) -> ValidatedDataset:
    """Check a frame against the contract and return it with 0/1 labels and its features.

    `required_columns` names further columns the data must have, such as the columns the slices
    and fairness attributes read (`Criteria.referenced_columns()`).
    """
    problems: list[str] = []
    if len(frame) == 0:
        raise DatasetError(source, ["the dataset has no rows"])

    id_col, label_col = contract.id_column, contract.label_column
    if contract.features == "all":
        features = [c for c in frame.columns if c not in (id_col, label_col)]
    else:
        features = list(contract.features)
    required = [label_col, *features]
    if id_col != "__row__":
        required.insert(0, id_col)
    required += [c for c in contract.columns if c not in required]
    required += [c for c in required_columns if c not in required]
    present = set(frame.columns)
    missing = [c for c in required if c not in present]
    if missing:
        them = "it" if len(missing) == 1 else "them"
        problems.append(f"{_columns(missing)}: missing (the contract requires {them})")
    if contract.extra_columns == "error":
        wanted = set(required)
        extra = [c for c in frame.columns if c not in wanted]
        if extra:
            them = "it" if len(extra) == 1 else "them"
            problems.append(
                f"{_columns(extra)}: not in the contract "
                f"(declare {them}, or set extra_columns: ignore)"
            )
    if problems:
        raise DatasetError(source, problems)

    ids = frame[id_col] if id_col != "__row__" else pd.Series(np.arange(len(frame)))

    def where(rows: np.ndarray) -> str:
        # In a CSV file the first data row is on line 2 (after the header); elsewhere, row 0.
        csv = source.lower().endswith(".csv")
        shown = [f"line {int(r) + 2}" if csv else f"row {int(r)}" for r in rows[:MAX_SHOWN]]
        shown = [f"{at} (id {_shown(ids.iloc[r])})" for at, r in zip(shown, rows, strict=False)]
        more = f" and {len(rows) - MAX_SHOWN:,} more" if len(rows) > MAX_SHOWN else ""
        return ", ".join(shown) + more

    for column, expected in contract.columns.items():
        problem = _type_problem(frame[column], expected)
        if problem is not None:
            message, rows = problem
            problems.append(f"column {column!r}: {message} at {where(rows)}")

    labels = frame[label_col]
    if labels.isna().any():
        rows = np.flatnonzero(labels.isna().to_numpy())
        problems.append(f"column {label_col!r}: missing label at {where(rows)}")
    positive = _is_class(labels, contract.positive_class)
    outside = ~positive & ~_is_class(labels, contract.negative_class) & labels.notna().to_numpy()
    if outside.any():
        rows = np.flatnonzero(outside)
        problems.append(
            f"column {label_col!r}: value {_shown(labels.iloc[rows[0]])} is not one of the two "
            f"classes {contract.negative_class!r}, {contract.positive_class!r} at {where(rows)}"
        )

    if id_col != "__row__":
        duplicated = frame[id_col].duplicated(keep=False).to_numpy()
        if duplicated.any():
            rows = np.flatnonzero(duplicated)
            problems.append(
                f"column {id_col!r}: duplicate id {_shown(frame[id_col].iloc[rows[0]])} "
                f"at {where(rows)}"
            )
        if frame[id_col].isna().any():
            rows = np.flatnonzero(frame[id_col].isna().to_numpy())
            problems.append(f"column {id_col!r}: missing id at {where(rows)}")

    for column in features:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            values = series.to_numpy(dtype=float, na_value=np.nan)
            infinite = np.isinf(values)
            if infinite.any():
                rows = np.flatnonzero(infinite)
                problems.append(
                    f"column {column!r}: infinite value {_shown(values[rows[0]])} at {where(rows)}"
                )
        if not contract.allow_missing_features and series.isna().any():
            rows = np.flatnonzero(series.isna().to_numpy())
            problems.append(
                f"column {column!r}: missing value (NaN) at {where(rows)} "
                "(set allow_missing_features: true if the model handles them)"
            )
    if problems:
        raise DatasetError(source, problems)

    y = positive.astype(np.int8)
    return ValidatedDataset(frame=frame, features=features, labels=y, source=source)


def validate_scores(
    scores: np.ndarray, frame: pd.DataFrame, id_column: str, source: str, first_row: int = 0
) -> None:
    """Scores must be finite probabilities; name the first rows that are not.

    `frame` holds the scored rows; `first_row` is its first row's number in the whole dataset
    (scoring in batches), so the message names the row of the dataset, not of the batch.
    """
    if scores.ndim != 1 or len(scores) != len(frame):
        # Checked before the values: a short or long score array would otherwise be compared
        # row by row with the wrong rows, or fail later in a numpy broadcast.
        raise DatasetError(
            source,
            [
                f"model scores have shape {scores.shape} for {len(frame)} rows starting at row "
                f"{first_row}; one score per row is required"
            ],
        )
    bad = ~np.isfinite(scores) | (scores < 0) | (scores > 1)
    if bad.any():
        rows = np.flatnonzero(bad)
        first = int(rows[0])
        ident = frame[id_column].iloc[first] if id_column in frame.columns else first_row + first
        raise DatasetError(
            source,
            [
                f"model score {_shown(scores[first])} for row {first_row + first} "
                f"(id {_shown(ident)}) is "
                f"not a probability in [0, 1]; {len(rows)} such row(s)"
            ],
        )


def require_both_classes(rows: int, positives: int, contract: DatasetContract, source: str) -> None:
    """A golden snapshot must hold both classes: on one class every ranking metric is undefined,
    and each later version would be judged on a snapshot that cannot tell models apart."""
    if 0 < positives < rows:
        return
    only = contract.positive_class if positives else contract.negative_class
    raise DatasetError(
        source,
        [
            f"column {contract.label_column!r}: all {rows:,} rows hold only class {only!r}; "
            "a golden snapshot needs both classes"
        ],
    )


def _first_invalid_utf8(path: Path) -> str:
    """Where the first byte that is not UTF-8 sits: byte value, file offset and line."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return f"byte {data[exc.start]:#x} at offset {exc.start} (line {line})"
    return "a byte sequence that is not UTF-8"


def _columns(names: list[object]) -> str:
    """``column 'a'``, or ``columns 'a', 'b', 'c' and 9,997 more``."""
    if len(names) == 1:
        return f"column {_shown(names[0])}"
    shown = ", ".join(_shown(n) for n in names[:MAX_SHOWN])
    more = f" and {len(names) - MAX_SHOWN:,} more" if len(names) > MAX_SHOWN else ""
    return f"columns {shown}{more}"


def _shown(value: object) -> str:
    """repr of a cell value as the person wrote it: 2, not np.int64(2); long text cut short."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    if len(text) > MAX_VALUE_CHARS:
        return f"{text[: MAX_VALUE_CHARS - 4]}...{text[-1]} ({len(text):,} characters)"
    return text


def positive_labels(labels: pd.Series, contract: DatasetContract) -> np.ndarray:
    """0/1 labels (int8) of a column already validated against the contract."""
    return _is_class(labels, contract.positive_class).astype(np.int8)


def _is_class(labels: pd.Series, cls: int | str) -> np.ndarray:
    """Rows whose label equals `cls`, accepting 1, 1.0 and "1" alike for a numeric class."""
    if pd.api.types.is_numeric_dtype(labels) and not isinstance(cls, str):
        return (labels == cls).to_numpy(dtype=bool)
    return (labels.astype(str).str.strip() == str(cls)).to_numpy(dtype=bool)


def _type_problem(series: pd.Series, expected: str) -> tuple[str, np.ndarray] | None:
    """(message, offending rows) when a column does not hold the expected type."""
    if expected in ("integer", "float"):
        if pd.api.types.is_bool_dtype(series):
            return f"expected {expected}, found booleans", np.arange(min(len(series), MAX_SHOWN))
        numeric = pd.to_numeric(series, errors="coerce")
        bad = numeric.isna() & series.notna()
        if bad.any():
            rows = np.flatnonzero(bad.to_numpy())
            return f"expected {expected}, found {_shown(series.iloc[rows[0]])}", rows
        if expected == "integer":
            values = numeric.dropna().to_numpy(dtype=float)
            fractional = np.flatnonzero(
                (numeric.notna() & (numeric != np.floor(numeric))).to_numpy()
            )
            if len(values) and len(fractional):
                return f"expected integer, found {_shown(series.iloc[fractional[0]])}", fractional
        return None
    if expected == "boolean":
        ok = series.isna() | series.isin([True, False, 0, 1, "true", "false", "True", "False"])
        if not ok.all():
            rows = np.flatnonzero(~ok.to_numpy())
            return f"expected boolean, found {_shown(series.iloc[rows[0]])}", rows
        return None
    # string: anything but numbers stored as numbers is acceptable text.
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return None
    bad = series.notna() & ~series.map(lambda v: isinstance(v, str))
    if bad.any():
        rows = np.flatnonzero(bad.to_numpy())
        return f"expected string, found {_shown(series.iloc[rows[0]])}", rows
    return None

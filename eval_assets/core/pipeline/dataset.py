"""A dataset file read in batches for the streamed pipeline: hashed through the bytes actually
read, converted once to Parquet when it is CSV, and validated against the contract batch by batch.

The checks and their messages are those of `contract.validate_dataset` on the whole file (rows
numbered in the whole file, the first offending rows shown, then a count), found in flat memory:
duplicate ids across batches are found by DuckDB, out of core, in a file of the ids.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from eval_assets.core.contract import (
    MAX_SHOWN,
    DatasetError,
    _columns,
    _is_class,
    _shown,
    _type_problem,
)
from eval_assets.core.criteria import DatasetContract
from eval_assets.core.digests import handle_digest
from eval_assets.core.pipeline.prediction_files import streamed_parquet

PARQUET_SUFFIXES, CSV_SUFFIXES = (".parquet", ".pq"), (".csv", ".txt")
# CSV bytes per block read: each block becomes one batch of rows (about 100,000 rows of the
# demo's transactions), validated and appended to the staged Parquet file as it is read.
CSV_BLOCK_BYTES = 8 << 20
_READ_BYTES = 1 << 22
# Parquet rows per batch validated.
PARQUET_BATCH_ROWS = 100_000
# DuckDB's memory while it looks for duplicate ids; beyond it, it spills to the scratch folder.
DUPLICATES_MEMORY = "64MB"
# Arrow types that hold a contract type as it is (no value needs checking).
_FITS = {
    "integer": pa.types.is_integer,
    "float": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "boolean": pa.types.is_boolean,
    "string": lambda t: (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type))
    ),
}
_ARROW_TYPE = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}


@dataclass(frozen=True)
class StreamedDataset:
    """A validated dataset ready to score: the Parquet to read (the open handle hashed, or the
    staged conversion of a CSV file), the SHA-256 of the bytes read, and what validation saw."""

    parquet: BinaryIO | Path
    sha256: str
    rows: int
    positives: int
    features: list[str]
    source: str


@contextmanager
def streamed_dataset(
    path: str | Path,
    contract: DatasetContract,
    scratch: Path,
    *,
    required_columns: Iterable[str] = (),
    source: str | None = None,
) -> Iterator[StreamedDataset]:
    """Open, hash and validate `path` (CSV or Parquet) in batches; `scratch` is a private folder
    for the CSV's Parquet conversion and the ids file. Bad input raises `DatasetError` naming the
    file (`source`, where `path` is a local copy), the column, the value and its line or row, as
    `validate_dataset` does."""
    path = Path(path)
    source = source or str(path)
    if not path.exists():
        raise DatasetError(source, ["file does not exist"])
    suffix = path.suffix.lower()
    if suffix not in PARQUET_SUFFIXES + CSV_SUFFIXES:
        raise DatasetError(source, [f"unsupported data format {suffix!r}; use .csv or .parquet"])
    with open(path, "rb") as handle:
        if suffix in PARQUET_SUFFIXES:
            sha256 = handle_digest(handle)
            try:
                data = streamed_parquet(handle)
                names = data.schema_arrow.names
                validator = BatchValidator(contract, source, names, scratch, required_columns)
                columns = validator.columns(names)
                for batch in data.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=columns):
                    validator.add(batch)
            except (pa.ArrowException, OSError) as exc:
                raise DatasetError(source, [f"cannot be read as {suffix[1:]}: {exc}"]) from None
            summary = validator.finish()
            handle.seek(0)
            yield StreamedDataset(handle, sha256, *summary, source)
            return
        staged = scratch / "data.parquet"
        sha256, summary = _csv_to_parquet(handle, path, contract, staged, scratch, required_columns)
    yield StreamedDataset(staged, sha256, *summary, source)


class _HashingReader:
    """The file's bytes as pyarrow's CSV reader reads them, hashed and checked to be UTF-8 on
    the way (the hash is that of the very bytes parsed)."""

    def __init__(self, handle: BinaryIO, source: str):
        self.handle, self.source = handle, source
        self.hash = hashlib.sha256()
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.offset = self.lines = 0
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(_READ_BYTES if size is None or size < 0 else size)
        self.hash.update(chunk)
        pending = self.decoder.getstate()[0]
        if pending or not chunk.isascii():
            try:
                self.decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = self.offset - len(pending) + exc.start
                data = pending + chunk
                byte = data[exc.start]
                line = self.lines + data[: exc.start].count(b"\n") + 1
                raise DatasetError(
                    self.source,
                    [f"not valid UTF-8 text: byte {byte:#x} at offset {at} (line {line})"],
                ) from None
        self.offset += len(chunk)
        self.lines += chunk.count(b"\n")
        return chunk

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _csv_to_parquet(
    handle: BinaryIO,
    path: Path,
    contract: DatasetContract,
    staged: Path,
    scratch: Path,
    required_columns: Iterable[str],
) -> tuple[str, tuple[int, int, list[str]]]:
    """Convert the CSV to the Parquet file `staged` block by block, validating each block; the
    contract's typed columns are read as text and cast here, so a value that is not of its type
    is reported as `validate_dataset` reports it, not as a parser error."""
    source = str(path)
    reader = _HashingReader(handle, source)
    text = {c: pa.string() for c in contract.columns}
    try:
        batches = pcsv.open_csv(
            reader,
            read_options=pcsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pcsv.ConvertOptions(column_types=text, strings_can_be_null=True),
        )
    except pa.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise DatasetError(source, ["the file is empty: no header and no rows"]) from None
        raise DatasetError(source, [f"cannot be read as csv: {exc}"]) from None
    names = batches.schema.names
    validator = BatchValidator(contract, source, names, scratch, required_columns)
    schema = pa.schema(
        [
            pa.field(n, _ARROW_TYPE[contract.columns[n]] if n in contract.columns else t)
            for n, t in zip(names, batches.schema.types, strict=True)
        ]
    )
    with pq.ParquetWriter(staged, schema) as writer:
        while True:
            try:
                batch = batches.read_next_batch()
            except StopIteration:
                break
            except pa.ArrowInvalid as exc:
                raise DatasetError(
                    source, [_conversion_problem(exc, names, validator.rows)]
                ) from None
            typed = validator.add_text(batch)
            if typed is not None and validator.clean:
                writer.write_batch(pa.RecordBatch.from_arrays(typed, schema=schema))
        # The last bytes (and the end of the file) went through the hash only if read to the end.
        while reader.read():
            pass
    return reader.hash.hexdigest(), validator.finish()


def _conversion_problem(exc: pa.ArrowInvalid, names: list[str], rows: int) -> str:
    """A parser error after the first block: an untyped column whose later values do not fit the
    type inferred from the first rows, or a malformed line."""
    pattern = r"CSV column #(\d+): CSV conversion error to (\w+): invalid value (.*)$"
    found = re.search(pattern, str(exc))
    if found:
        column = names[int(found.group(1))]
        return (
            f"column {column!r}: value {found.group(3)} after line {rows + 1} is not of the type "
            f"{found.group(2)} the first rows have; declare the column's type in the contract "
            "(dataset.columns)"
        )
    return f"cannot be read as csv: {exc}"


@dataclass
class _Finding:
    """One problem as it accumulates over the batches: its text, the first rows, the count."""

    head: str
    tail: str = ""
    shown: list[str] = field(default_factory=list)
    count: int = 0


class BatchValidator:
    """`validate_dataset`, one batch of rows at a time, with the same messages: `add` each batch
    in order, then `finish` (which raises `DatasetError` with every problem found).

    Only the columns the contract checks are read; ids go to a Parquet file in `scratch`, where
    DuckDB finds duplicates out of core once every batch is in.
    """

    def __init__(
        self,
        contract: DatasetContract,
        source: str,
        names: list[str],
        scratch: Path,
        required_columns: Iterable[str] = (),
    ):
        self.contract, self.source = contract, source
        self.csv = source.lower().endswith(".csv")
        id_col, label_col = contract.id_column, contract.label_column
        if contract.features == "all":
            features = [c for c in names if c not in (id_col, label_col)]
        else:
            features = list(contract.features)
        required = [label_col, *features]
        if id_col != "__row__":
            required.insert(0, id_col)
        required += [c for c in contract.columns if c not in required]
        required += [c for c in required_columns if c not in required]
        problems = []
        missing = [c for c in required if c not in set(names)]
        if missing:
            them = "it" if len(missing) == 1 else "them"
            problems.append(f"{_columns(missing)}: missing (the contract requires {them})")
        if contract.extra_columns == "error":
            extra = [c for c in names if c not in set(required)]
            if extra:
                them = "it" if len(extra) == 1 else "them"
                problems.append(
                    f"{_columns(extra)}: not in the contract "
                    f"(declare {them}, or set extra_columns: ignore)"
                )
        if problems:
            raise DatasetError(source, problems)
        self.features, self.required = features, required
        self.rows = self.positives = 0
        self.findings: dict[tuple, _Finding] = {}
        self.ids_file = scratch / "ids.parquet"
        self._ids_writer: pq.ParquetWriter | None = None

    @property
    def clean(self) -> bool:
        return not self.findings

    def columns(self, names: list[str]) -> list[str]:
        """The columns a batch must carry: the required ones, in the file's order."""
        wanted = set(self.required)
        return [n for n in names if n in wanted]

    def add_text(self, batch: pa.RecordBatch) -> list[pa.Array] | None:
        """A CSV batch whose typed columns are text: each is cast to its type, or (where a value
        does not fit) checked as `validate_dataset` checks a column pandas could not parse.
        Returns the batch's columns cast to their types (None when some value did not fit)."""
        typed: list[pa.Array] = []
        ok = True
        for name, values in zip(batch.schema.names, batch.columns, strict=True):
            expected = self.contract.columns.get(name)
            if expected is None:
                typed.append(values)
                continue
            cast = _cast(values, expected)
            if cast is None:
                ok = False
                typed.append(values)
            else:
                typed.append(cast)
        checked = pa.RecordBatch.from_arrays(typed, names=batch.schema.names)
        self.add(checked, text_columns=not ok)
        return typed if ok else None

    def add(self, batch: pa.RecordBatch, text_columns: bool = False) -> None:
        """Check one batch (rows numbered after those added before)."""
        contract, first = self.contract, self.rows
        n = batch.num_rows
        if n == 0:
            return
        id_col, label_col = contract.id_column, contract.label_column
        ids = batch.column(id_col) if id_col != "__row__" else None

        def note(key: tuple, head: str, rows: np.ndarray, tail: str = "") -> None:
            finding = self.findings.setdefault(key, _Finding(head, tail))
            for r in rows[: max(0, MAX_SHOWN - len(finding.shown))]:
                at = f"line {first + int(r) + 2}" if self.csv else f"row {first + int(r)}"
                ident = ids[int(r)].as_py() if ids is not None else first + int(r)
                finding.shown.append(f"{at} (id {_shown(ident)})")
            finding.count += len(rows)

        for position, (column, expected) in enumerate(contract.columns.items()):
            values = batch.column(column)
            if not text_columns and _FITS[expected](values.type):
                continue
            problem = _type_problem(_pandas(values, text_columns), expected)
            if problem is not None:
                message, rows = problem
                note((1, position), f"column {column!r}: {message}", rows)

        labels = _pandas(batch.column(label_col), text_columns)
        missing = labels.isna().to_numpy()
        if missing.any():
            note((2,), f"column {label_col!r}: missing label", np.flatnonzero(missing))
        positive = _is_class(labels, contract.positive_class)
        outside = ~positive & ~_is_class(labels, contract.negative_class) & ~missing
        if outside.any():
            rows = np.flatnonzero(outside)
            note(
                (3,),
                f"column {label_col!r}: value {_shown(labels.iloc[rows[0]])} is not one of the "
                f"two classes {contract.negative_class!r}, {contract.positive_class!r}",
                rows,
            )
        self.positives += int(positive.sum())

        if ids is not None:
            if ids.null_count:
                rows = np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))
                note((5,), f"column {id_col!r}: missing id", rows)
            self._write_ids(ids)

        for position, column in enumerate(self.features):
            values = batch.column(column)
            if pa.types.is_dictionary(values.type):
                values = values.dictionary_decode()
            if pa.types.is_floating(values.type):
                numbers = values.to_numpy(zero_copy_only=False)
                infinite = np.isinf(numbers)
                if infinite.any():
                    rows = np.flatnonzero(infinite)
                    note(
                        (6, position, 0),
                        f"column {column!r}: infinite value {_shown(numbers[rows[0]])}",
                        rows,
                    )
                absent = np.isnan(numbers)
            elif text_columns and column in contract.columns:
                absent = _pandas(values, True).isna().to_numpy()
            else:
                absent = values.is_null().to_numpy(zero_copy_only=False)
            if not contract.allow_missing_features and absent.any():
                note(
                    (6, position, 1),
                    f"column {column!r}: missing value (NaN)",
                    np.flatnonzero(absent),
                    " (set allow_missing_features: true if the model handles them)",
                )
        self.rows += n

    def _write_ids(self, ids: pa.Array) -> None:
        if pa.types.is_dictionary(ids.type):
            ids = ids.dictionary_decode()
        batch = pa.RecordBatch.from_arrays([ids], names=["id"])
        if self._ids_writer is None:
            self._ids_writer = pq.ParquetWriter(self.ids_file, batch.schema)
        self._ids_writer.write_batch(batch)

    def finish(self) -> tuple[int, int, list[str]]:
        """(rows, positives, features) of a valid dataset; `DatasetError` with every problem
        otherwise, in the order `validate_dataset` lists them."""
        if self._ids_writer is not None:
            self._ids_writer.close()
            self._ids_writer = None
            self._duplicates()
        if self.rows == 0:
            raise DatasetError(self.source, ["the dataset has no rows"])
        if self.findings:
            problems = []
            for _, finding in sorted(self.findings.items()):
                more = finding.count - len(finding.shown)
                where = ", ".join(finding.shown) + (f" and {more:,} more" if more > 0 else "")
                problems.append(f"{finding.head} at {where}{finding.tail}")
            raise DatasetError(self.source, problems)
        return self.rows, self.positives, self.features

    def _duplicates(self) -> None:
        """Every row whose id occurs more than once: DuckDB groups the ids out of core."""
        connection = duckdb.connect()
        try:
            connection.execute(f"SET memory_limit = '{DUPLICATES_MEMORY}'")
            spill = str(self.ids_file.parent / "duckdb").replace("'", "''")
            connection.execute(f"SET temp_directory = '{spill}'")
            connection.execute("SET preserve_insertion_order = false")
            ids = "read_parquet(?, file_row_number = true)"
            rows = connection.execute(
                f"WITH twice AS (SELECT id FROM {ids} WHERE id IS NOT NULL GROUP BY id "
                "HAVING count(*) > 1) "
                f"SELECT file_row_number, id, count(*) OVER () FROM {ids} "
                f"WHERE id IN (SELECT id FROM twice) ORDER BY file_row_number LIMIT {MAX_SHOWN}",
                [str(self.ids_file), str(self.ids_file)],
            ).fetchall()
        finally:
            connection.close()
        if not rows:
            return
        finding = _Finding(f"column {self.contract.id_column!r}: duplicate id {_shown(rows[0][1])}")
        for r, ident, _ in rows:
            at = f"line {int(r) + 2}" if self.csv else f"row {int(r)}"
            finding.shown.append(f"{at} (id {_shown(ident)})")
        finding.count = int(rows[0][2])
        self.findings[(4,)] = finding


def _pandas(values: pa.Array, text: bool) -> pd.Series:
    """A column as pandas would have read it whole: text columns of a CSV become numbers when
    every value of the batch parses as one (pandas' own inference), objects otherwise."""
    series = values.to_pandas()
    if text and series.dtype == object:
        numeric = pd.to_numeric(series, errors="coerce")
        if not (numeric.isna() & series.notna()).any():
            return numeric
    return series


def _cast(values: pa.Array, expected: str) -> pa.Array | None:
    """A text column cast to its contract type, or None when some value is not of that type."""
    if expected == "string":
        return values
    try:
        return pc.cast(values, _ARROW_TYPE[expected])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    # What pandas would accept: "1.0" as an integer, "True" as a boolean.
    series = _pandas(values, True)
    if _type_problem(series, expected) is not None:
        return None
    if expected == "boolean":
        # 1 and 0 are the same keys as True and False.
        truth = {True: True, False: False, "true": True, "false": False}
        truth |= {"True": True, "False": False}
        return pa.array(series.map(truth), type=pa.bool_(), from_pandas=True)
    numbers = pd.to_numeric(series, errors="coerce")
    return pa.array(numbers, type=_ARROW_TYPE[expected], from_pandas=True)

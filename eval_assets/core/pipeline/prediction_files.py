"""Stored predictions read in batches, the streamed evaluation's input: memory holds one batch,
whatever the number of rows in the snapshot.

A predictions file has one row per snapshot row: its id, label, score and the slice keys. The
champion's side is read beside the candidate's, batch for batch; when both scored the snapshot in
the same row order (the usual case) that is a plain parallel read, otherwise DuckDB joins the
champion's scores to the candidate's rows by id, out of core.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from eval_assets.core.criteria import Criteria, PredicateSlice
from eval_assets.core.metrics.streamed import Cutter, ScoreBatch
from eval_assets.core.models import PREDICT_BATCH_ROWS
from eval_assets.core.pipeline.threads import read_ahead
from eval_assets.core.predicates import parse_predicate, predicate_columns
from eval_assets.core.slicing import SlicePlan, plan_slices

LABEL, SCORE, ROW_ID = "label", "score", "row_id"
# The footer key of a digest of the file's ids in order (see `RowIdsDigest`).
ROW_IDS_KEY = b"eval_assets.row_ids"
# The footer key of the SHA-256 of the snapshot bytes the file's scores were computed from.
SNAPSHOT_SHA_KEY = b"eval_assets.snapshot_sha256"
# Arrow text read back as Arrow-backed pandas strings: no Python object per value.
ARROW_STRINGS = {
    pa.string(): pd.StringDtype("pyarrow"),
    pa.large_string(): pd.StringDtype("pyarrow"),
}


class PipelineError(ValueError):
    """Inputs the pipeline cannot evaluate as given (files that do not match); the message says
    which and why, and the caller reports it as is."""


def slice_key_columns(criteria: Criteria) -> list[str]:
    """Columns the slices and fairness attributes read, kept beside each score."""
    columns: list[str] = []
    for spec in criteria.slices:
        used = (
            predicate_columns(parse_predicate(spec.where))
            if isinstance(spec, PredicateSlice)
            else {spec.by}
        )
        columns += sorted(used)
    columns += criteria.fairness
    return list(dict.fromkeys(c for c in columns if c not in (ROW_ID, LABEL, SCORE)))


def rows_in(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def batches(path: Path, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's `columns`, `PREDICT_BATCH_ROWS` rows at a time, in flat memory."""
    # Pre-buffering (pyarrow's default) caches what it read for the life of the file: memory
    # would grow with the file, about 2.5 MB per 100,000 rows of these columns.
    return streamed_parquet(path).iter_batches(batch_size=PREDICT_BATCH_ROWS, columns=columns)


def streamed_parquet(path: Path | BinaryIO) -> pq.ParquetFile:
    """A Parquet file to read batch by batch without keeping what was read."""
    return pq.ParquetFile(path, pre_buffer=False)


def frames(path: Path, columns: list[str]) -> Iterator[pd.DataFrame]:
    """The file's `columns`, one batch of rows at a time (text Arrow-backed, dictionaries as
    categories)."""
    if not columns:
        return
    for batch in batches(path, columns):
        yield batch.to_pandas(types_mapper=ARROW_STRINGS.get)


def slice_plan(criteria: Criteria, path: Path) -> SlicePlan:
    """The slices and fairness groups of a predictions file (reads only the columns that decide
    which value slices and groups exist)."""
    by = [s.by for s in criteria.slices if not isinstance(s, PredicateSlice)]
    columns = list(dict.fromkeys([*by, *criteria.fairness]))
    return plan_slices(criteria, _distinct_values(path, columns))


def _distinct_values(path: Path, columns: list[str]) -> Iterator[pd.DataFrame]:
    """One frame of the file's distinct values of each column (none for an empty file), typed
    as `frames` types them; shorter columns repeat their first value, which adds no slice or
    group. Found in Arrow batch by batch: converting every batch to pandas took twice as long."""
    found: dict[str, list[pa.Array]] = {name: [] for name in columns}
    schema = None
    for batch in batches(path, columns) if columns else ():
        schema = batch.schema
        for name, values in zip(columns, batch.columns, strict=True):
            found[name].append(_distinct_in(values))
    if schema is None:
        return
    distinct = []
    for name in columns:
        values = pc.unique(pa.concat_arrays(found[name]))
        if pa.types.is_dictionary(schema.field(name).type):
            values = pc.dictionary_encode(values)
        distinct.append(values)
    rows = max(len(values) for values in distinct)
    padded = [values.take(np.minimum(np.arange(rows), len(values) - 1)) for values in distinct]
    yield pa.RecordBatch.from_arrays(padded, names=columns).to_pandas(
        types_mapper=ARROW_STRINGS.get
    )


def _distinct_in(values: pa.Array) -> pa.Array:
    """A batch's distinct values, dictionaries decoded (batches may have different ones)."""
    if pa.types.is_dictionary(values.type):
        if values.null_count == 0:  # the dictionary entries its indices use, without hashing
            used = np.bincount(values.indices.to_numpy(), minlength=len(values.dictionary))
            return values.dictionary.take(np.flatnonzero(used))
        return pc.unique(values).dictionary_decode()
    return pc.unique(values)


def score_batches(
    plan: SlicePlan,
    path: Path,
    key_columns: list[str],
    scores: Iterator[np.ndarray] | None = None,
) -> Iterator[ScoreBatch]:
    """Labels, scores, slice membership and group codes of the file, batch by batch; `scores`
    (aligned with the file's rows) replace the file's own, for the champion's side."""
    for batch, other in paired_batches(plan, path, key_columns, scores):
        yield batch if other is None else replace(batch, score=other)


def paired_batches(
    plan: SlicePlan,
    path: Path,
    key_columns: list[str],
    other: Iterator[np.ndarray] | None = None,
) -> Iterator[tuple[ScoreBatch, np.ndarray | None]]:
    """The file's batches, each with the same rows' scores cut from `other` (when given).

    The next batch is read and sliced on another thread while the caller works on this one:
    Parquet decoding and most of numpy release the GIL, and the two take about as long."""
    return read_ahead(_paired_batches(plan, path, key_columns, other))


def _paired_batches(
    plan: SlicePlan,
    path: Path,
    key_columns: list[str],
    other: Iterator[np.ndarray] | None,
) -> Iterator[tuple[ScoreBatch, np.ndarray | None]]:
    taken = None if other is None else Cutter([scores] for scores in other)
    for frame in frames(path, [LABEL, SCORE, *key_columns]):
        batch = ScoreBatch(
            frame[LABEL].to_numpy(),
            frame[SCORE].to_numpy(),
            plan.bits(frame),
            plan.group_codes(frame),
        )
        if taken is None:
            yield batch, None
            continue
        scores = taken.take(len(frame))
        if not scores or len(scores[0]) < len(frame):
            raise ValueError("the other scores ran out before the file's rows")
        yield batch, scores[0]


class RowIdsDigest:
    """A digest of a file's ids in order, fed batch by batch as the file is written and kept in
    its footer: two files with the same digest hold the same ids in the same order, found without
    reading a million ids from each."""

    def __init__(self) -> None:
        self._hash = hashlib.blake2b(digest_size=16)

    def update(self, ids: pa.Array) -> None:
        # The type, then the batch in Arrow's IPC format: equal bytes decode to equal ids.
        self._hash.update(str(ids.type).encode())
        self._hash.update(pa.RecordBatch.from_arrays([ids], names=[ROW_ID]).serialize())

    def footer(self) -> dict[bytes, bytes]:
        return {ROW_IDS_KEY: self._hash.hexdigest().encode()}


def row_ids_digest(path: Path) -> bytes | None:
    """The digest `RowIdsDigest` left in the file's footer, if it has one."""
    return (pq.ParquetFile(path).metadata.metadata or {}).get(ROW_IDS_KEY)


def scored_snapshot_sha256(path: Path) -> str | None:
    """The SHA-256 of the snapshot bytes the file was scored from, if its footer records it."""
    value = (pq.ParquetFile(path).metadata.metadata or {}).get(SNAPSHOT_SHA_KEY)
    return value.decode() if value else None


def same_rows_in_order(candidate: Path, champion: Path) -> bool:
    """Whether both files list the same ids in the same order: by their footers' digests when
    those agree, otherwise by comparing the ids batch by batch (the same ids may have been
    written in other batches, or before files carried a digest)."""
    if rows_in(candidate) != rows_in(champion):
        return False
    digest = row_ids_digest(candidate)
    if digest is not None and digest == row_ids_digest(champion):
        return True
    ours, theirs = batches(candidate, [ROW_ID]), batches(champion, [ROW_ID])
    return all(a.column(0).equals(b.column(0)) for a, b in zip(ours, theirs, strict=True))


def champion_scores(candidate: Path, champion: Path, in_order: bool) -> Iterator[np.ndarray]:
    """The champion's scores in the candidate's row order (in arrays of any length); a
    `PipelineError` when the two files do not cover the same rows."""
    if in_order:
        for batch in batches(champion, [SCORE]):
            yield batch.column(0).to_numpy()
        return
    connection = duckdb.connect()
    try:
        joined = (
            f"FROM read_parquet($candidate, file_row_number = true) AS c "
            f'LEFT JOIN read_parquet($champion) AS h ON c."{ROW_ID}" = h."{ROW_ID}"'
        )
        files = {"candidate": str(candidate), "champion": str(champion)}
        matched, scored = connection.sql(
            f'SELECT count(*), count(h."{SCORE}") {joined}', params=files
        ).fetchall()[0]
        expected = rows_in(candidate)
        if not matched == scored == expected == rows_in(champion):
            raise PipelineError(
                "the champion's predictions do not cover the same rows as the candidate's "
                f"({expected} candidate rows, {rows_in(champion)} champion rows, "
                f"{scored} matched by {ROW_ID})"
            )
        # The relation must outlive its reader.
        relation = connection.sql(
            f'SELECT h."{SCORE}" {joined} ORDER BY c.file_row_number', params=files
        )
        for batch in relation.to_arrow_reader(PREDICT_BATCH_ROWS):
            yield batch.column(0).to_numpy()
    finally:
        connection.close()

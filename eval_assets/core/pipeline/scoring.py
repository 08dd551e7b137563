"""Scoring a snapshot into a predictions file, batch by batch: memory holds one batch whatever
the number of rows, and the file's footer records what it was scored from."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from eval_assets.core.contract import positive_labels, validate_scores
from eval_assets.core.criteria import Criteria
from eval_assets.core.models import PREDICT_BATCH_ROWS, LoadedModel
from eval_assets.core.pipeline.prediction_files import (
    ARROW_STRINGS,
    LABEL,
    ROW_ID,
    SCORE,
    SNAPSHOT_SHA_KEY,
    RowIdsDigest,
    slice_key_columns,
    streamed_parquet,
)
from eval_assets.core.pipeline.threads import read_ahead, written_behind

# The contract's id column when the data has none: rows are named by their number.
ROW_NUMBER = "__row__"


def score_into(
    criteria: Criteria,
    snapshot: BinaryIO | Path,
    model: LoadedModel,
    name: str,
    snapshot_sha256: str,
    destination: Path,
) -> dict[str, Any]:
    """Score the Parquet `snapshot` (an open handle or a path) with `model` in batches, and write
    each batch's id, label, score and slice keys to the Parquet file `destination` as soon as
    they exist. `name` names the model in score errors; `snapshot_sha256` (the bytes the caller
    verified) goes into the file's footer with the digest of its ids.

    Returns the rows, the sum of the scores, the rows flagged at the threshold and that SHA-256.
    """
    contract = criteria.dataset
    keep = slice_key_columns(criteria)
    summary = {"rows": 0, "score_sum": 0.0, "flagged": 0, "snapshot_sha256": snapshot_sha256}
    data = streamed_parquet(snapshot)
    schema = data.schema_arrow
    features = (
        [c for c in schema.names if c not in (contract.id_column, contract.label_column)]
        if contract.features == "all"
        else list(contract.features)
    )
    # The model sees its features as pandas gives them (the same as a whole-file read); the
    # id stays Arrow-backed (no Python string per row), and unused columns are not read.
    model_columns = list(dict.fromkeys([*features, contract.label_column]))
    # Without an id column (`__row__`, a bare CLI run), a row's id is its number in the file.
    numbered = contract.id_column == ROW_NUMBER and ROW_NUMBER not in schema.names
    if numbered:
        schema = schema.append(pa.field(ROW_NUMBER, pa.int64()))
    read = [
        c
        for c in dict.fromkeys([*model_columns, contract.id_column, *keep])
        if not (numbered and c == ROW_NUMBER)
    ]
    stored = _predictions_schema(schema, contract.id_column, keep)
    # Ids are unique and floats (scores, amounts) nearly so: a dictionary for them would be
    # built page by page only to be dropped, which took 40% of the writing time at 1M rows.
    encoded = [f.name for f in stored if f.name != ROW_ID and not pa.types.is_floating(f.type)]
    ids_digest = RowIdsDigest()

    def write(part: tuple[pa.RecordBatch, np.ndarray, np.ndarray]) -> None:
        batch, labels, scores = part
        columns = [
            batch.column(contract.id_column),
            pa.array(labels),
            pa.array(scores),
            # Text slice keys as dictionaries: a few bytes a row, read back as categories.
            *(_dictionary(batch.column(c)) for c in keep),
        ]
        writer.write_table(pa.Table.from_arrays(columns, schema=stored))
        ids_digest.update(columns[0])

    with pq.ParquetWriter(destination, stored, use_dictionary=encoded) as writer:
        # Each batch is encoded and written on another thread while the next is predicted;
        # the footer's digest once the last batch is written.
        with written_behind(write) as write_behind:
            for batch, frame in read_ahead(
                (batch, batch.select(model_columns).to_pandas())
                for batch in _numbered(
                    data.iter_batches(batch_size=PREDICT_BATCH_ROWS, columns=read), numbered
                )
            ):
                if contract.id_column not in frame.columns:  # it names rows in score errors
                    ids = batch.column(contract.id_column)
                    frame[contract.id_column] = ids.to_pandas(types_mapper=ARROW_STRINGS.get)
                scores = model.predict_scores(frame, features, contract.positive_class)
                validate_scores(scores, frame, contract.id_column, name, summary["rows"])
                labels = positive_labels(frame[contract.label_column], contract)
                write_behind((batch, labels, scores))
                summary["rows"] += len(scores)
                summary["score_sum"] += float(scores.sum())
                summary["flagged"] += int(np.count_nonzero(scores >= contract.threshold))
        writer.add_key_value_metadata(
            ids_digest.footer() | {SNAPSHOT_SHA_KEY: snapshot_sha256.encode()}
        )
    return summary


def _numbered(batches: Iterator[pa.RecordBatch], numbered: bool) -> Iterator[pa.RecordBatch]:
    """The batches, each with its rows' numbers in the file as the `__row__` column if asked."""
    first = 0
    for batch in batches:
        if numbered:
            numbers = pa.array(np.arange(first, first + batch.num_rows, dtype=np.int64))
            batch = batch.append_column(ROW_NUMBER, numbers)
            first += batch.num_rows
        yield batch


def _is_text(type_: pa.DataType) -> bool:
    return pa.types.is_string(type_) or pa.types.is_large_string(type_)


def _predictions_schema(snapshot: pa.Schema, id_column: str, keep: list[str]) -> pa.Schema:
    """id, label (0/1), score, then the slice keys: text ones dictionary-encoded."""
    keys = [
        pa.field(c, pa.dictionary(pa.int32(), pa.string()) if _is_text(t) else t)
        for c, t in ((c, snapshot.field(c).type) for c in keep)
    ]
    return pa.schema(
        [
            pa.field(ROW_ID, snapshot.field(id_column).type),
            pa.field(LABEL, pa.int8()),
            pa.field(SCORE, pa.float64()),
            *keys,
        ]
    )


def _dictionary(values: pa.Array) -> pa.Array:
    if not _is_text(values.type):
        return values
    return values.cast(pa.string()).dictionary_encode()

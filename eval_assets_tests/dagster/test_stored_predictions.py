"""Predictions are stored compactly (Arrow ids, dictionary-encoded slice keys) and read back
through the evaluation store without changing a value, and a failed write stores nothing.

The compact forms are a memory measure only: what comes back must be what was scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from eval_assets.core.pipeline.scoring import _dictionary, _predictions_schema
from eval_assets.resources.storage import LocalEvaluationStore


def test_predictions_written_batch_by_batch_read_back_with_sorted_categories(tmp_path):
    # Each batch dictionary-encodes its own text keys, so the parts' dictionaries differ in
    # content and order; the reader must still give one sorted set of categories.
    snapshot = pa.schema([("id", pa.string()), ("country", pa.string()), ("hour", pa.int64())])
    stored = _predictions_schema(snapshot, "id", ["country", "hour"])
    batches = [
        (["t1", "t2", "t3"], ["US", "FR", None], [1, None, 3]),
        (["t4", "t5"], ["BR", "US"], [4, 5]),
    ]
    store = LocalEvaluationStore(root=str(tmp_path))
    with (
        store.writing("m/predictions/p.parquet") as handle,
        pq.ParquetWriter(handle, stored) as writer,
    ):
        for ids, countries, hours in batches:
            columns = [
                pa.array(ids),
                pa.array([0] * len(ids), pa.int8()),
                pa.array([0.5] * len(ids)),
                _dictionary(pa.array(countries)),
                _dictionary(pa.array(hours)),
            ]
            writer.write_table(pa.Table.from_arrays(columns, schema=stored))
    frame = store.read_frame("m/predictions/p.parquet")
    assert frame["row_id"].dtype == pd.StringDtype("pyarrow")
    assert frame["row_id"].tolist() == ["t1", "t2", "t3", "t4", "t5"]
    country = frame["country"]
    assert isinstance(country.dtype, pd.CategoricalDtype)
    assert list(country.cat.categories) == ["BR", "FR", "US"]
    assert country.astype(object).where(country.notna(), None).tolist() == [
        "US",
        "FR",
        None,
        "BR",
        "US",
    ]
    assert frame["hour"].dtype == np.float64  # as pandas reads a nullable integer column
    assert frame["label"].dtype == np.int8 and frame["score"].dtype == np.float64
    assert list(Path(tmp_path).rglob("*.tmp")) == []


def test_a_failed_write_stores_nothing(tmp_path):
    store = LocalEvaluationStore(root=str(tmp_path))
    with pytest.raises(RuntimeError, match="scoring failed"):
        with store.writing("m/predictions/p.parquet") as path:
            path.write_bytes(b"PAR1 half a file")
            raise RuntimeError("scoring failed")
    assert store.read("m/predictions/p.parquet") is None
    assert [p for p in Path(tmp_path).rglob("*") if p.is_file()] == []

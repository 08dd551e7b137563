"""The streamed pipeline reads a dataset in batches; bad data must still be reported exactly as
`validate_dataset` reports it on the whole file.

Each case breaks a generated dataset in one way (or several), is written as CSV and as Parquet,
and is read in batches of a few rows: the error must be the same text, line and row numbers
counted in the whole file, the first rows shown and the rest counted across batches. Good data
comes back hashed from the bytes read, with the values pandas reads from the file.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from eval_assets.core.contract import DatasetError, read_table, validate_dataset
from eval_assets.core.criteria import DatasetContract
from eval_assets.core.pipeline import dataset
from eval_assets.core.pipeline.dataset import streamed_dataset

CONTRACT = DatasetContract(
    id_column="id",
    label_column="label",
    features=["amount", "country", "hour"],
    columns={"id": "string", "amount": "float", "country": "string", "hour": "integer"},
)
ROWS = 200


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    """A few rows per batch, so that every problem below spans batches."""
    monkeypatch.setattr(dataset, "CSV_BLOCK_BYTES", 300)
    monkeypatch.setattr(dataset, "PARQUET_BATCH_ROWS", 7)


def good_frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "id": [f"t{i:04d}" for i in range(ROWS)],
            "label": rng.integers(0, 2, ROWS),
            "amount": rng.exponential(100, ROWS).round(2),
            "country": rng.choice(["US", "FR", "DE"], ROWS),
            "hour": rng.integers(0, 24, ROWS),
        }
    )


def _set(column: str, rows: list[int], value: object) -> Callable[[pd.DataFrame], None]:
    def change(frame: pd.DataFrame) -> None:
        if not isinstance(value, float) or frame[column].dtype.kind not in "f":
            frame[column] = frame[column].astype(object)
        for row in rows:
            frame.loc[row, column] = value

    return change


CASES: dict[str, list[Callable[[pd.DataFrame], None]]] = {
    "text in a float column": [_set("amount", [10, 90, 150, 151, 199], "n/a?")],
    "a fraction in an integer column": [_set("hour", [3, 120], 2.5)],
    "labels outside the classes": [_set("label", [1, 80, 160], 7)],
    "missing labels": [_set("label", [0, 77], np.nan)],
    "duplicate ids across batches": [_set("id", [4, 150, 199], "t0020")],
    "missing ids": [_set("id", [12, 140], None)],
    "infinite and missing features": [
        _set("amount", [33, 171], np.inf),
        _set("amount", [2, 66, 67, 68, 190], np.nan),
    ],
    "every kind at once": [
        _set("label", [150], 3),
        _set("amount", [190], "?"),
        _set("id", [5, 6], "t0100"),
        _set("country", [40, 41], None),
        _set("hour", [199], np.nan),
    ],
    "missing and extra columns": [
        lambda f: f.drop(columns="hour", inplace=True),
        lambda f: f.insert(2, "note", "x"),
    ],
}


def whole_file_error(path: Path, contract: DatasetContract) -> str:
    with pytest.raises(DatasetError) as caught:
        validate_dataset(read_table(path), contract, str(path))
    return str(caught.value)


def streamed_error(path: Path, contract: DatasetContract, scratch: Path) -> str:
    scratch.mkdir()
    with pytest.raises(DatasetError) as caught:
        with streamed_dataset(path, contract, scratch):
            pass
    return str(caught.value)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("case", list(CASES))
def test_streamed_validation_reports_what_whole_file_validation_reports(tmp_path, case, suffix):
    frame = good_frame()
    for change in CASES[case]:
        change(frame)
    path = tmp_path / f"golden{suffix}"
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        if frame["amount"].dtype == object:  # Parquet columns hold one type: text throughout
            frame["amount"] = frame["amount"].astype(str)
        frame.to_parquet(path, index=False)
    contract = CONTRACT.model_copy(update={"extra_columns": "error"})

    expected = whole_file_error(path, contract)
    if case == "missing ids":
        # Two deliberate differences: pandas counts missing ids as duplicates of one another
        # ("duplicate id nan"), and shows a missing id of a CSV as nan; a missing id is reported
        # once, as missing, and shown as None (as pandas shows it from Parquet).
        lines = [
            line
            for line in expected.splitlines()
            if "duplicate id nan" not in line and "duplicate id None" not in line
        ]
        expected = "\n".join(lines).replace("(id nan)", "(id None)")
    assert streamed_error(path, contract, tmp_path / "scratch") == expected


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty: no header and no rows"),
        (b"id,label,amount,country,hour\n", "the dataset has no rows"),
        ("id,label,amount,country,hour\n" + "t1,0,1.5,US,3\n" * 40 + "t2,0,1,Curaçao,4\n", None),
    ],
)
def test_an_empty_or_non_utf8_csv_is_named_as_the_whole_file_reader_names_it(
    tmp_path, content, message
):
    path = tmp_path / "golden.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("latin-1"))
    with pytest.raises(DatasetError) as caught:
        validate_dataset(read_table(path), CONTRACT, str(path))

    assert streamed_error(path, CONTRACT, tmp_path / "scratch") == str(caught.value)
    if message:
        assert message in str(caught.value)


def test_a_valid_csv_is_hashed_as_read_and_staged_with_the_values_pandas_reads(tmp_path):
    frame = good_frame()
    frame.loc[5, "hour"] = np.nan  # an integer column with a gap reads as floats in pandas
    path = tmp_path / "golden.csv"
    frame.to_csv(path, index=False)
    contract = CONTRACT.model_copy(update={"allow_missing_features": True})
    (tmp_path / "scratch").mkdir()

    with streamed_dataset(path, contract, tmp_path / "scratch") as data:
        assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert (data.rows, data.positives) == (ROWS, int(frame["label"].sum()))
        assert data.features == ["amount", "country", "hour"]
        staged = pq.read_table(data.parquet)
    assert staged.schema.field("hour").type == "int64"  # the contract's type, gaps as nulls
    assert staged.num_rows == ROWS and pq.ParquetFile(data.parquet).num_row_groups > 10
    pd.testing.assert_frame_equal(
        staged.to_pandas(), read_table(path), check_dtype=False, check_exact=True
    )


def test_a_parquet_file_is_read_through_the_handle_it_was_hashed_from(tmp_path):
    path = tmp_path / "golden.parquet"
    good_frame().to_parquet(path, index=False)
    (tmp_path / "scratch").mkdir()

    with streamed_dataset(path, CONTRACT, tmp_path / "scratch") as data:
        assert data.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
        assert not isinstance(data.parquet, Path) and data.parquet.tell() == 0
        assert pq.read_table(data.parquet).num_rows == ROWS == data.rows

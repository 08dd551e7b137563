"""A golden dataset that breaks its contract must stop the evaluation with an actionable message.

Each test feeds one kind of bad data and checks that the error names the file, the column and the
offending value and row, so the data owner can fix it without a debugger; and that good data comes
back with 0/1 labels and the resolved feature list.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from eval_assets.core.contract import (
    DatasetError,
    read_hashed_table,
    read_table,
    validate_dataset,
    validate_scores,
)
from eval_assets.core.criteria import DatasetContract

SOURCE = "golden.parquet"
CONTRACT = DatasetContract(
    id_column="id",
    label_column="label",
    features=["amount", "country"],
    columns={"amount": "float", "country": "string", "hour": "integer"},
)


def good_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["t1", "t2", "t3", "t4"],
            "label": [0, 1, 0, 1],
            "amount": [10.0, 20000.0, 35.5, 7.0],
            "country": ["US", "FR", "US", "DE"],
            "hour": [1, 13, 23, 4],
        }
    )


def problems(frame: pd.DataFrame, contract: DatasetContract = CONTRACT, **kwargs) -> str:
    with pytest.raises(DatasetError) as caught:
        validate_dataset(frame, contract, SOURCE, **kwargs)
    message = str(caught.value)
    assert all(line.startswith(f"{SOURCE}: ") for line in message.splitlines()), message
    return message


# --- good data ----------------------------------------------------------------------------------


def test_good_data_comes_back_with_binary_labels_and_its_features():
    frame = good_frame()
    validated = validate_dataset(frame, CONTRACT, SOURCE)

    assert validated.features == ["amount", "country"]
    assert validated.labels.tolist() == [0, 1, 0, 1]
    assert validated.labels.dtype == np.int8
    assert validated.frame is frame


def test_all_features_means_every_column_but_the_id_and_the_label():
    contract = DatasetContract(id_column="id", label_column="label")

    features = validate_dataset(good_frame(), contract, SOURCE).features

    assert features == ["amount", "country", "hour"]


def test_string_classes_are_mapped_to_one_for_the_positive_class():
    contract = DatasetContract(
        id_column="id",
        label_column="label",
        positive_class="fraud",
        negative_class="ok",
        extra_columns="ignore",
    )
    frame = good_frame().assign(label=["ok", "fraud", " ok", "fraud"])

    assert validate_dataset(frame, contract, SOURCE).labels.tolist() == [0, 1, 0, 1]


# --- columns ------------------------------------------------------------------------------------


def test_a_missing_label_column_is_named():
    message = problems(good_frame().drop(columns="label"))

    assert "column 'label': missing" in message


def test_a_missing_feature_column_is_named():
    message = problems(good_frame().drop(columns="country"))

    assert "column 'country': missing" in message


def test_an_extra_column_is_named_and_can_be_ignored_by_the_contract():
    frame = good_frame().assign(notes="x")

    assert "column 'notes': not in the contract" in problems(frame)
    lenient = CONTRACT.model_copy(update={"extra_columns": "ignore"})
    assert validate_dataset(frame, lenient, SOURCE).features == ["amount", "country"]


def test_columns_the_slices_read_are_required_too():
    message = problems(good_frame(), required_columns=["merchant_category"])

    assert "column 'merchant_category': missing" in message


# --- values -------------------------------------------------------------------------------------


def test_a_string_in_a_float_column_is_named_with_its_value_and_row():
    frame = good_frame().astype({"amount": object})
    frame.loc[2, "amount"] = "12,50"

    message = problems(frame)

    assert "column 'amount': expected float, found '12,50' at row 2 (id 't3')" in message


def test_a_fraction_in_an_integer_column_is_named():
    frame = good_frame().astype({"hour": float})
    frame.loc[1, "hour"] = 13.5

    assert "column 'hour': expected integer, found 13.5 at row 1 (id 't2')" in problems(frame)


def test_a_nan_feature_is_named_with_its_row():
    frame = good_frame()
    frame.loc[3, "amount"] = np.nan

    message = problems(frame)

    assert "column 'amount': missing value (NaN) at row 3 (id 't4')" in message
    allowed = CONTRACT.model_copy(update={"allow_missing_features": True})
    assert validate_dataset(frame, allowed, SOURCE).labels.tolist() == [0, 1, 0, 1]


def test_an_infinite_feature_is_named_with_its_value_and_row():
    frame = good_frame()
    frame.loc[0, "amount"] = -np.inf

    assert "column 'amount': infinite value -inf at row 0 (id 't1')" in problems(frame)


def test_a_nan_label_is_named_with_its_row():
    frame = good_frame().astype({"label": float})
    frame.loc[1, "label"] = np.nan

    assert "column 'label': missing label at row 1 (id 't2')" in problems(frame)


@pytest.mark.parametrize("bad", [2, "yes"])
def test_a_label_outside_the_two_classes_is_named_with_its_value(bad):
    frame = good_frame().astype({"label": object})
    frame.loc[2, "label"] = bad

    message = problems(frame)

    assert f"column 'label': value {bad!r} is not one of the two classes 0, 1" in message
    assert "row 2 (id 't3')" in message


def test_duplicate_ids_are_named_with_every_row_that_shares_them():
    frame = good_frame()
    frame.loc[3, "id"] = "t1"

    assert "column 'id': duplicate id 't1' at row 0 (id 't1'), row 3 (id 't1')" in problems(frame)


def test_many_offending_rows_are_summarised():
    frame = pd.concat([good_frame()] * 3, ignore_index=True)
    frame["id"] = [f"t{i}" for i in range(len(frame))]
    frame["amount"] = np.nan

    assert "row 2 (id 't2') and 9 more" in problems(frame)


def test_every_problem_is_reported_at_once():
    frame = good_frame().astype({"label": object})
    frame.loc[0, "label"] = "yes"
    frame.loc[1, "amount"] = np.inf
    frame.loc[3, "id"] = "t3"

    message = problems(frame)

    assert len(message.splitlines()) == 3


def test_an_empty_frame_is_refused():
    assert "the dataset has no rows" in problems(good_frame().iloc[0:0])


def test_csv_rows_are_reported_as_file_lines(tmp_path):
    path = tmp_path / "golden.csv"
    frame = good_frame()
    frame.loc[1, "label"] = 7
    frame.to_csv(path, index=False)

    with pytest.raises(DatasetError) as caught:
        validate_dataset(read_table(path), CONTRACT, str(path))

    assert f"{path}: column 'label': value 7 is not one of the two classes" in str(caught.value)
    assert "line 3 (id 't2')" in str(caught.value)


# --- files --------------------------------------------------------------------------------------


def test_csv_and_parquet_files_are_read(tmp_path):
    frame = good_frame()
    frame.to_csv(tmp_path / "g.csv", index=False)
    frame.to_parquet(tmp_path / "g.parquet", index=False)

    pd.testing.assert_frame_equal(read_table(tmp_path / "g.csv"), frame)
    pd.testing.assert_frame_equal(read_table(tmp_path / "g.parquet"), frame)


def test_a_csv_that_is_not_utf8_names_the_file_and_the_byte(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("id,label,country\nt1,0,Curaçao\n".encode("latin-1"))

    with pytest.raises(DatasetError) as caught:
        read_table(path)

    assert str(caught.value) == f"{path}: not valid UTF-8 text: byte 0xe7 at offset 26 (line 2)"


def test_an_empty_file_names_the_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    with pytest.raises(DatasetError, match=f"{path}: the file is empty"):
        read_table(path)


def test_a_header_without_rows_reads_as_an_empty_frame_that_validation_refuses(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("id,label,amount,country,hour\n")

    with pytest.raises(DatasetError, match="has no rows"):
        validate_dataset(read_table(path), CONTRACT, str(path))


def test_a_missing_or_damaged_or_unknown_file_names_the_file(tmp_path):
    damaged = tmp_path / "damaged.parquet"
    damaged.write_bytes(b"PAR1 not really")
    unknown = tmp_path / "data.json"
    unknown.write_text("{}")

    with pytest.raises(DatasetError, match="nope.csv: file does not exist"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DatasetError, match="damaged.parquet: cannot be read as parquet"):
        read_table(damaged)
    with pytest.raises(DatasetError, match="data.json: unsupported data format '.json'"):
        read_table(unknown)


# --- scores -------------------------------------------------------------------------------------


def test_finite_probabilities_are_valid_scores():
    validate_scores(np.array([0.0, 0.5, 1.0, 0.25]), good_frame(), "id", "model.skops")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.1, 1.5])
def test_a_score_that_is_not_a_probability_is_named_with_its_row_and_id(bad):
    scores = np.array([0.1, 0.2, bad, 0.4])

    with pytest.raises(DatasetError) as caught:
        validate_scores(scores, good_frame(), "id", "model.skops")

    message = str(caught.value)
    assert message.startswith("model.skops: model score ")
    assert f"score {float(bad)!r} for row 2 (id 't3')" in message


def test_a_bad_score_in_a_later_batch_is_named_with_its_row_in_the_whole_dataset():
    with pytest.raises(DatasetError, match=r"score nan for row 102 \(id 't3'\)"):
        validate_scores(np.array([0.1, 0.2, np.nan, 0.4]), good_frame(), "id", "m", first_row=100)


@pytest.mark.parametrize("shape", [(3,), (5,), (4, 1)])
def test_scores_that_are_not_one_per_row_are_refused_before_their_values(shape):
    """Issue 22 item 3: too few or too many scores used to reach numpy's broadcasting (or be
    compared with the wrong rows); the check names the source, the shape and the row count."""
    with pytest.raises(DatasetError) as caught:
        validate_scores(np.full(shape, 0.5), good_frame(), "id", "model.skops", first_row=100)

    assert str(caught.value) == (
        f"model.skops: model scores have shape {shape} for 4 rows starting at row 100; "
        "one score per row is required"
    )


@pytest.mark.parametrize("name", ["data.csv", "data.parquet"])
def test_the_digest_read_with_a_table_is_that_of_the_bytes_the_frame_came_from(
    tmp_path, monkeypatch, name
):
    """The CLI records the data's SHA-256 beside its metrics: it must be the hash of the bytes
    parsed, even when the file is replaced (renamed over) between hashing and parsing."""
    import eval_assets.core.contract as contract

    path = tmp_path / name
    first = pd.DataFrame({"id": ["a", "b"], "y": [0, 1]})
    second = pd.DataFrame({"id": ["c", "d", "e"], "y": [1, 0, 1]})
    write = (
        (lambda f, p: f.to_csv(p, index=False))
        if name.endswith(".csv")
        else (lambda f, p: f.to_parquet(p, index=False))
    )
    write(first, path)
    first_bytes = path.read_bytes()
    hashed = contract.handle_digest

    def hash_then_replace(handle):
        digest = hashed(handle)
        write(second, tmp_path / f"next-{name}")
        (tmp_path / f"next-{name}").replace(path)
        return digest

    monkeypatch.setattr(contract, "handle_digest", hash_then_replace)
    frame, digest = read_hashed_table(path)

    assert frame.equals(first)
    assert digest == hashlib.sha256(first_bytes).hexdigest()
    assert path.read_bytes() != first_bytes  # the file really was replaced in between


# --- many problems: summarised, not listed (issue 22, item 8) ----------------------------------


def test_ten_thousand_extra_columns_make_a_short_error_naming_a_few_and_counting_the_rest():
    extra = pd.DataFrame({f"x{i}": [0.0] * 4 for i in range(10_000)})
    frame = pd.concat([good_frame(), extra], axis=1)

    message = problems(frame)

    assert len(message.splitlines()) == 1, message[:500]
    assert "columns 'x0', 'x1', 'x2' and 9,997 more: not in the contract" in message


def test_many_missing_columns_are_named_a_few_then_counted():
    contract = CONTRACT.model_copy(update={"features": [f"f{i}" for i in range(500)]})

    message = problems(good_frame(), contract)

    assert "columns 'f0', 'f1', 'f2' and 497 more: missing" in message
    assert len(message) < 300, message


def test_many_problems_list_the_first_then_say_how_many_more():
    # 5,000 features, each with a missing value: one problem per column.
    frame = pd.DataFrame({f"f{i}": [1.0, None, 2.0, 3.0] for i in range(5_000)})
    frame = pd.concat([good_frame()[["id", "label"]], frame], axis=1)
    contract = DatasetContract(id_column="id", label_column="label")

    with pytest.raises(DatasetError) as caught:
        validate_dataset(frame, contract, SOURCE)

    lines = str(caught.value).splitlines()
    assert len(lines) == 11, lines[:3]
    assert lines[0] == (
        f"{SOURCE}: column 'f0': missing value (NaN) at row 1 (id 't2') "
        "(set allow_missing_features: true if the model handles them)"
    )
    assert lines[-1] == f"{SOURCE}: and 4,990 more problems"
    assert len(caught.value.problems) == 5_000  # all of them, for a caller that wants them


def test_rows_are_named_a_few_then_counted_with_thousands_separated():
    frame = pd.concat([good_frame()] * 3000, ignore_index=True)
    frame["id"] = [f"t{i}" for i in range(len(frame))]
    frame["amount"] = frame["amount"].astype(object)
    frame.loc[:, "amount"] = "n/a"

    message = problems(frame)

    assert "at row 0 (id 't0'), row 1 (id 't1'), row 2 (id 't2') and 11,997 more" in message


def test_a_huge_cell_value_is_cut_short_in_the_message():
    frame = good_frame().astype({"amount": object})
    frame.loc[2, "amount"] = "x" * 1_000_000

    message = problems(frame)

    assert len(message) < 300, len(message)
    assert "(1,000,002 characters) at row 2 (id 't3')" in message

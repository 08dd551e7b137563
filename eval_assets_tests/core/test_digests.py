"""Digests are identities: the evaluation key decides whether an evaluation already happened.

So the same bytes must give the same digest wherever and however they were written, a folder's
digest must not depend on the order its files were created in, and the key must change when any
one of its inputs changes (and stay the same, to the bit, when none does).
"""

from __future__ import annotations

import hashlib

import pytest

from eval_assets.core import EVALUATOR_VERSION
from eval_assets.core.digests import artifact_digest, evaluation_key, file_digest

FILES = {"MLmodel": b"flavors: {}\n", "model.skops": b"\x00" * 3000, "sub/requirements.txt": b"x"}


def make_folder(root, order):
    for name in order:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(FILES[name])
    return root


def test_the_same_bytes_give_the_same_digest_whatever_the_file_is_called(tmp_path):
    (tmp_path / "a.csv").write_bytes(b"id,label\n1,0\n")
    (tmp_path / "b.csv").write_bytes(b"id,label\n1,0\n")
    (tmp_path / "c.csv").write_bytes(b"id,label\n1,1\n")

    assert file_digest(tmp_path / "a.csv") == file_digest(tmp_path / "b.csv")
    assert file_digest(tmp_path / "a.csv") != file_digest(tmp_path / "c.csv")
    assert file_digest(tmp_path / "a.csv") == hashlib.sha256(b"id,label\n1,0\n").hexdigest()


def test_a_large_file_is_digested_in_full(tmp_path):
    data = bytes(range(256)) * 20_000  # several read chunks
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(data[:-1] + b"\x00")  # only the very last byte differs
    assert file_digest(path) != hashlib.sha256(data).hexdigest()


def test_a_file_artifact_digest_is_its_file_digest(tmp_path):
    path = tmp_path / "model.skops"
    path.write_bytes(b"model")

    assert artifact_digest(path) == file_digest(path)


def test_a_folder_digest_does_not_depend_on_the_order_files_were_created(tmp_path):
    first = make_folder(tmp_path / "one", ["MLmodel", "model.skops", "sub/requirements.txt"])
    second = make_folder(tmp_path / "two", ["sub/requirements.txt", "model.skops", "MLmodel"])

    assert artifact_digest(first) == artifact_digest(second)


def test_a_folder_digest_changes_with_a_file_name_or_content(tmp_path):
    base = artifact_digest(make_folder(tmp_path / "base", list(FILES)))
    renamed = make_folder(tmp_path / "renamed", list(FILES))
    (renamed / "model.skops").rename(renamed / "model2.skops")
    edited = make_folder(tmp_path / "edited", list(FILES))
    (edited / "MLmodel").write_bytes(b"flavors: {sklearn: {}}\n")
    extra = make_folder(tmp_path / "extra", list(FILES))
    (extra / "notes.txt").write_bytes(b"")

    others = {artifact_digest(folder) for folder in (renamed, edited, extra)}

    assert len(others | {base}) == 4


def test_mlflow_bookkeeping_left_in_a_model_folder_does_not_change_its_digest(tmp_path):
    # MLflow writes this file into a local store's model folder when the model is loaded by
    # `models:/` URI; the digest must still say the model is the one first seen.
    folder = make_folder(tmp_path / "model", list(FILES))
    before = artifact_digest(folder)
    (folder / "registered_model_meta").write_text("model_name: m\nmodel_version: '1'\n")
    assert artifact_digest(folder) == before
    (folder / "sub" / "registered_model_meta").write_text("only the top-level file is MLflow's")
    assert artifact_digest(folder) != before


def test_a_missing_path_has_no_digest(tmp_path):
    with pytest.raises(FileNotFoundError):
        artifact_digest(tmp_path / "nope")


def test_the_evaluation_key_is_stable_and_changes_with_each_input():
    inputs = ("m" * 64, "s" * 64, "c" * 64, "9.9.9")
    key = evaluation_key(*inputs)

    assert key == evaluation_key(*inputs)
    # Pinned: the key must be the same on any machine and must not drift between releases
    # (format 2 added the champion compared against; format 1 keys were 5d1a221f...).
    assert key == "7ba68d2cecb33d13677a2fc5e9bc7bc0039967faafd78c27aacb31bfc7455d3a"
    changed = {
        evaluation_key(*inputs[:i], "x" * len(value), *inputs[i + 1 :])
        for i, value in enumerate(inputs)
    }
    assert len(changed) == 4 and key not in changed


def test_the_evaluation_key_defaults_to_this_evaluators_version():
    assert evaluation_key("m", "s", "c") == evaluation_key("m", "s", "c", EVALUATOR_VERSION)
    assert evaluation_key("m", "s", "c") != evaluation_key("m", "s", "c", EVALUATOR_VERSION + "x")


def test_the_evaluation_key_changes_with_the_champion_compared_against():
    """A verdict is a comparison: against another champion it is another evaluation (issue 22).

    Without the champion in the key, a candidate compared with v1 and later with v2 had one key,
    so the second comparison was never launched and never recorded.
    """
    inputs = ("m" * 64, "s" * 64, "c" * 64)
    none = evaluation_key(*inputs)

    assert evaluation_key(*inputs, champion_digest=None) == none
    assert evaluation_key(*inputs, champion_digest="") == none  # no champion, however spelled
    first, second = (evaluation_key(*inputs, champion_digest=d * 64) for d in "ab")
    assert len({none, first, second}) == 3
    assert first == evaluation_key(*inputs, champion_digest="a" * 64)

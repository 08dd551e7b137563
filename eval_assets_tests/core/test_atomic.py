"""All-or-nothing writes: a temporary beside the file, renamed into place only when whole."""

from __future__ import annotations

import errno

import pytest

from eval_assets.core import atomic


def test_a_write_error_names_the_file_and_leaves_the_old_one(tmp_path):
    target = tmp_path / "out" / "table.parquet"
    atomic.write_bytes(target, b"old")
    with pytest.raises(OSError) as caught:
        with atomic.replacing(target) as temporary:
            temporary.write_bytes(b"half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert caught.value.filename == str(target) and caught.value.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert [p.name for p in target.parent.iterdir()] == ["table.parquet"]


def test_another_error_inside_the_block_keeps_its_own_message(tmp_path):
    # An error that is not about writing this file (a refused connection while producing its
    # content) must not be reported as a fault of the file.
    target = tmp_path / "table.parquet"
    with pytest.raises(ConnectionRefusedError) as caught:
        with atomic.replacing(target) as temporary:
            temporary.write_bytes(b"half")
            raise ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    assert caught.value.filename is None
    assert list(tmp_path.iterdir()) == []


def test_a_whole_write_replaces_the_file(tmp_path):
    target = tmp_path / "table.parquet"
    with atomic.replacing(target) as temporary:
        temporary.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    assert list(tmp_path.iterdir()) == [target]

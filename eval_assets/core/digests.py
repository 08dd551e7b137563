"""Content digests and the evaluation key that makes every evaluation idempotent."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from eval_assets.core import EVALUATOR_VERSION

_CHUNK = 1 << 20
# Written by MLflow into a model folder when it is loaded by `models:/` URI (on a local store, into
# the stored folder itself): the registered name and version, not model content.
BOOKKEEPING_FILES = frozenset({"registered_model_meta"})


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    with open(path, "rb") as handle:
        return handle_digest(handle)


def handle_digest(handle: BinaryIO) -> str:
    """SHA-256 of an open file's bytes from its start, streamed; the handle is left at its start,
    so the bytes then read through it are the bytes hashed (a rename over the path cannot come
    in between)."""
    handle.seek(0)
    digest = hashlib.sha256()
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
    handle.seek(0)
    return digest.hexdigest()


def artifact_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's relative paths and file contents in sorted order.

    MLflow's bookkeeping file at the top of a folder is left out, so loading a model through
    MLflow does not change its digest.
    """
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        # A missing path must not digest like an empty folder.
        raise FileNotFoundError(f"{path}: no such file or folder")
    digest = hashlib.sha256()
    files = (p for p in path.rglob("*") if p.is_file())
    for item in sorted(p for p in files if p.relative_to(path).as_posix() not in BOOKKEEPING_FILES):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file_digest(item).encode() + b"\n")
    return digest.hexdigest()


# Stands for "no champion" in an evaluation key: a first version judged on absolute gates only.
NO_CHAMPION = "no-champion"


def evaluation_key(
    model_digest: str,
    snapshot_digest: str,
    criteria_hash: str,
    evaluator_version: str = EVALUATOR_VERSION,
    *,
    champion_digest: str | None = None,
) -> str:
    """Identity of one evaluation: same model bytes, data, criteria, evaluator and champion
    compared against (its artifact digest, or `NO_CHAMPION`), same key.

    The champion is part of it because a verdict is a comparison: the same candidate against
    another champion is another evaluation, with its own record.
    """
    fields = (
        "eval-assets/2",
        model_digest,
        snapshot_digest,
        criteria_hash,
        evaluator_version,
        champion_digest or NO_CHAMPION,
    )
    return hashlib.sha256("\n".join(fields).encode()).hexdigest()

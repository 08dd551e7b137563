"""Content digests and the evaluation key that makes every evaluation idempotent."""

from __future__ import annotations

import hashlib
from pathlib import Path

from eval_assets.core import EVALUATOR_VERSION

_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_digest(path: str | Path) -> str:
    """SHA-256 of a file, or of a folder's relative paths and file contents in sorted order."""
    path = Path(path)
    if path.is_file():
        return file_digest(path)
    if not path.is_dir():
        # A missing path must not digest like an empty folder.
        raise FileNotFoundError(f"{path}: no such file or folder")
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(item.relative_to(path).as_posix().encode() + b"\0")
        digest.update(file_digest(item).encode() + b"\n")
    return digest.hexdigest()


def evaluation_key(
    model_digest: str,
    snapshot_digest: str,
    criteria_hash: str,
    evaluator_version: str = EVALUATOR_VERSION,
) -> str:
    """Identity of one evaluation: same model bytes, data, criteria and evaluator, same key."""
    fields = ("eval-assets/1", model_digest, snapshot_digest, criteria_hash, evaluator_version)
    return hashlib.sha256("\n".join(fields).encode()).hexdigest()

"""Writes that are all or nothing: a temporary name in the same folder, then a rename."""

from __future__ import annotations

import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the whole new one."""
    return _replace_with(path, lambda handle: handle.write(data))


def copy_file(source: str | Path, path: str | Path) -> Path:
    """Copy `source` to `path`, streamed, with the same all-or-nothing guarantee."""
    with open(source, "rb") as reader:
        return _replace_with(path, lambda handle: shutil.copyfileobj(reader, handle, 1 << 22))


# Errors of writing the file itself, which then name it (others keep their own message).
_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _replace_with(path: str | Path, fill: Callable[[BinaryIO], object]) -> Path:
    with replacing(path) as temporary, open(temporary, "wb") as handle:
        fill(handle)
    return Path(path)


@contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """A temporary file beside `path` to write; when the block ends without error it is synced
    to disk and replaces `path` whole, and on any error it is removed (readers never see a half
    file, and a full disk names `path`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid is in the temporary's name, so a later write can tell an orphan (its
    # writer was killed before the rename) from a concurrent writer's file.
    prefix = f".{path.name}.{os.getpid()}."
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None and exc.errno in _WRITE_ERRORS:
            # A full disk says "No space left on device" without saying where: name the file.
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _remove_orphans(path)


def _remove_orphans(path: Path) -> None:
    """Delete temporaries of `path` whose writer process no longer exists on this host."""
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        # ".<name>.<pid>.<random, no dots>.tmp", read from the end: names may hold dots.
        parts = candidate.name[: -len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[0] == f".{path.name}" and parts[1].isdigit():
            if not _alive(int(parts[1])):
                candidate.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def staging_dir(final: str | Path) -> Path:
    """A fresh temporary folder beside `final`, to be published with `publish_dir`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))


def publish_dir(staged: Path, final: str | Path) -> Path:
    """Move a completely written folder into place, replacing an older one whole."""
    final = Path(final)
    if final.exists():
        retired = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".old"))
        os.replace(final, retired / final.name)
        os.replace(staged, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staged, final)
    return final

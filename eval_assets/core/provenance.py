"""Where code came from: the git commit of a working tree, for run ids and audit records."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path


def git_commit(cwd: str | Path = ".") -> str | None:
    """Short sha of HEAD with ``-dirty`` when the tree has changes, or None outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}-dirty" if status else sha


def run_id(evaluation_key: str, cwd: str | Path = ".") -> str:
    """``<commit>-<key prefix>``, or a UTC timestamp in place of the commit outside git."""
    origin = git_commit(cwd) or datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return f"{origin}-{evaluation_key[:12]}"

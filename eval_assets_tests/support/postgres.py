"""A throwaway PostgreSQL server on 127.0.0.1 for tests of Dagster's Postgres storage (the
production setting, README "Environments"): Debian's server binaries (`.ci/install-postgres`),
a fresh cluster in a temporary folder, stopped and removed afterwards."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from eval_assets_tests.support.services import HOST, free_port

START_TIMEOUT_S = 60


def _binaries() -> Path:
    """The folder holding initdb and pg_ctl: on PATH, else the newest Debian server package."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if not versions:
        pytest.fail(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: run "
            "`bash .ci/install-postgres` (make test does)"
        )
    return Path(versions[-1]).parent


def _version(path: str) -> int:
    part = Path(path).parts[-3]
    return int(part) if part.isdigit() else 0


def _as_server_user(command: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: as root, run it as Debian's `postgres` user."""
    if os.geteuid() != 0:
        return command
    return ["runuser", "-u", _server_user().pw_name, "--", *command]


def _server_user() -> pwd.struct_passwd:
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("running as root with neither a `postgres` nor a `nobody` user to run PostgreSQL")


@contextmanager
def postgres_server(database: str = "dagster") -> Iterator[str]:
    """Start a server with one empty `database`; yield its SQLAlchemy URL (psycopg2 driver)."""
    bin_dir = _binaries()
    # Not under pytest's tmp_path: its folders are private to the test user, and as root the
    # server runs as another user.
    folder = Path(tempfile.mkdtemp(prefix="eval-assets-pg-"))
    if os.geteuid() == 0:
        user = _server_user()
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, log = folder / "data", folder / "server.log"
    port = free_port()
    started = False
    try:
        initdb = subprocess.run(
            _as_server_user(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"]
                + ["-E", "UTF8", "--no-sync"]
            ),
            capture_output=True,
            text=True,
        )
        if initdb.returncode != 0:
            pytest.fail(f"initdb failed in {folder}: {initdb.stderr or initdb.stdout}")
        options = (
            f"-c listen_addresses={HOST} -p {port} -c unix_socket_directories={folder} -c fsync=off"
        )
        start = [str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options]
        done = subprocess.run(
            _as_server_user([*start, "-w", "-t", str(START_TIMEOUT_S), "start"]),
            capture_output=True,
            text=True,
        )
        started = True
        if done.returncode != 0:
            tail = log.read_text()[-2000:] if log.exists() else ""
            pytest.fail(f"PostgreSQL did not start on {HOST}:{port}: {done.stderr}\n{tail}")
        url = f"postgresql+psycopg2://postgres@{HOST}:{port}"
        _create_database(f"{url}/postgres", database)
        yield f"{url}/{database}"
    finally:
        if started:
            subprocess.run(
                _as_server_user([str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
            )
        shutil.rmtree(folder, ignore_errors=True)


def connect(url: str) -> Any:
    """A psycopg2 connection to a database named by its SQLAlchemy URL."""
    import psycopg2

    return psycopg2.connect(url.replace("postgresql+psycopg2://", "postgresql://", 1))


def _create_database(admin_url: str, name: str) -> None:
    connection = connect(admin_url)
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()

"""A real PostgreSQL 15 for tests: one server per session, a fresh database per test.

We run as root and PostgreSQL refuses to, so the cluster is initialised and started as the
``postgres`` system user (``runuser``) in a temporary directory that user owns. It listens on
127.0.0.1 at a free port with trust authentication (loopback, throwaway data) and is stopped at
the end of the session, even when tests fail.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.support.ports import free_port

__all__ = ["PostgresServer", "postgres_dsn", "postgres_server", "start_postgres"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL: where it listens and how to reach its maintenance database."""

    host: str
    port: int
    data_dir: Path

    def dsn(self, database: str = "postgres") -> str:
        """Return a libpq URL for ``database`` as the superuser."""
        return f"postgresql://{PG_USER}@{self.host}:{self.port}/{database}"


def _require_binaries() -> None:
    missing = [n for n in ("initdb", "pg_ctl", "postgres") if not (PG_BIN / n).exists()]
    if missing:
        raise RuntimeError(
            f"PostgreSQL 15 server binaries missing in {PG_BIN} ({', '.join(missing)}): "
            "install the Debian package postgresql-15 (scripts/setup.sh)"
        )
    try:
        pwd.getpwnam(PG_USER)
    except KeyError as exc:
        raise RuntimeError(f"system user {PG_USER!r} missing: install postgresql-15") from exc


def _as_postgres(*args: str) -> subprocess.CompletedProcess[str]:
    command = ["runuser", "-u", PG_USER, "--", *args] if os.geteuid() == 0 else list(args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """Initialise, start and finally stop and delete a throwaway PostgreSQL cluster."""
    _require_binaries()
    root = Path(tempfile.mkdtemp(prefix="sidecar-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        entry = pwd.getpwnam(PG_USER)
        for path in (root, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    started = False
    try:
        init = _as_postgres(
            str(PG_BIN / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8"
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        port = free_port()
        # Durability settings off: test data is thrown away and fsyncs would slow the suite.
        options = (
            f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sockets} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        start = _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options,
            "-l", str(root / "server.log"), "-w", "-t", "30", "start",
        )  # fmt: skip
        started = True
        if start.returncode != 0:
            log = (root / "server.log").read_text(errors="replace")
            raise RuntimeError(f"pg_ctl start failed:\n{start.stderr}\n{log}")
        yield PostgresServer(host="127.0.0.1", port=port, data_dir=data)
    finally:
        if started:
            _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL 15 for the whole session (fails loudly when it is not installed)."""
    with start_postgres() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """A DSN of a fresh, empty database, dropped after the test."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = postgres_server.dsn()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.dsn(name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

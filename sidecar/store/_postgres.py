"""The PostgreSQL job store: a few psycopg 3 async connections shared by the workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import psycopg

from sidecar.errors import ConfigError
from sidecar.store._core import SqlJobStore
from sidecar.store._protocols import Tx
from sidecar.store._sql import Dialect

__all__ = ["POSTGRES", "PostgresJobStore"]

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    blob_type="BYTEA",
    # Replicas claiming at once each skip the rows the other is leasing: no job is taken twice.
    lock_clause="FOR UPDATE SKIP LOCKED",
    migrate_lock="SELECT pg_advisory_xact_lock(7243519)",
    # Lease expiry and claims are judged on the server's clock, never a replica's own.
    now_sql="SELECT now()",
)


class _PgTx:
    """Statements of one transaction on one connection."""

    def __init__(self, conn: psycopg.AsyncConnection[tuple[Any, ...]]) -> None:
        self._conn = conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement and return its rows."""
        cur = await self._conn.execute(POSTGRES.sql(sql), list(params))
        return await cur.fetchall()

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement and return how many rows it changed."""
        cur = await self._conn.execute(POSTGRES.sql(sql), list(params))
        return cur.rowcount


class _PostgresBackend:
    """A fixed set of connections handed out through a queue (one transaction each)."""

    dialect = POSTGRES

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._idle: asyncio.Queue[psycopg.AsyncConnection[tuple[Any, ...]]] = asyncio.Queue()
        self._all: list[psycopg.AsyncConnection[tuple[Any, ...]]] = []

    async def _connect_one(self) -> psycopg.AsyncConnection[tuple[Any, ...]]:
        try:
            conn = await psycopg.AsyncConnection.connect(self._dsn, autocommit=True)
        except psycopg.OperationalError as exc:
            raise ConfigError("replication.store", f"cannot connect to PostgreSQL: {exc}") from exc
        self._all.append(conn)
        return conn

    async def connect(self) -> None:
        """Open the connections."""
        for _ in range(self._size):
            self._idle.put_nowait(await self._connect_one())

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Run one transaction on an idle connection, replacing it if the server dropped it."""
        conn = await self._idle.get()
        try:
            if conn.closed or conn.broken:
                self._all.remove(conn)
                conn = await self._connect_one()
            async with conn.transaction():
                yield _PgTx(conn)
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        """Close every connection."""
        conns, self._all = self._all, []
        for conn in conns:
            await conn.close()
        self._idle = asyncio.Queue()


class PostgresJobStore(SqlJobStore):
    """Jobs, webhook inbox and pull counts in PostgreSQL, shared safely by several replicas."""

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        """Use the database at ``dsn`` (``postgresql://user@host:port/db``)."""
        parts = urlsplit(dsn)
        where = f"postgresql://{parts.hostname or ''}:{parts.port or ''}{parts.path}"
        # Never log the password: the description ends up in reprs and errors.
        super().__init__(_PostgresBackend(dsn, pool_size), description=where)

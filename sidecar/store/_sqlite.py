"""The SQLite job store: one WAL-mode connection driven from a single worker thread."""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sidecar.store._core import SqlJobStore
from sidecar.store._protocols import Tx
from sidecar.store._sql import Dialect

__all__ = ["SQLITE", "SqliteJobStore"]

SQLITE = Dialect(name="sqlite", placeholder="?", blob_type="BLOB", lock_clause="")

_T = TypeVar("_T")


class _SqliteTx:
    """Statements of one transaction, each run on the backend's thread."""

    def __init__(self, backend: _SqliteBackend) -> None:
        self._backend = backend

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement and return its rows."""
        return await self._backend.call(lambda c: c.execute(sql, tuple(params)).fetchall())

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement and return how many rows it changed."""
        return await self._backend.call(lambda c: c.execute(sql, tuple(params)).rowcount)


class _SqliteBackend:
    """One connection, one thread: sqlite3 objects must stay on the thread that uses them."""

    dialect = SQLITE

    def __init__(self, path: str) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        # Several workers share the connection: one transaction at a time.
        self._lock = asyncio.Lock()

    def submit(self, fn: Callable[[sqlite3.Connection], _T]) -> asyncio.Future[_T]:
        """Queue ``fn(connection)`` on the backend's thread now; return its future."""
        if self._conn is None or self._executor is None:
            raise RuntimeError("SQLite job store is closed")
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(fn, self._conn))

    async def call(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``fn(connection)`` on the backend's thread."""
        return await self.submit(fn)

    async def connect(self) -> None:
        """Open the database file (creating its directory) in WAL mode."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="jobstore-sqlite")
        loop = asyncio.get_running_loop()
        self._conn = await loop.run_in_executor(self._executor, self._open)

    def _open(self) -> sqlite3.Connection:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit mode: transactions are explicit BEGIN IMMEDIATE ... COMMIT below.
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        # FULL: an enqueued job must survive a power loss, not only a process crash.
        conn.execute("PRAGMA synchronous=FULL")
        # Another process (a CLI next to the server) may hold the write lock briefly.
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """Run one transaction; IMMEDIATE takes the write lock up front so claims never interleave."""
        async with self._lock:
            # BEGIN and COMMIT sit inside the try: a caller cancelled while either is queued or
            # running must still end the transaction, or the shared connection stays in it and
            # every later BEGIN fails ("cannot start a transaction within a transaction").
            try:
                await self.call(lambda c: c.execute("BEGIN IMMEDIATE"))
                yield _SqliteTx(self)
                await self.call(lambda c: c.execute("COMMIT"))
            except BaseException:
                # Queued at once behind whatever still runs on the (single, FIFO) thread, and
                # shielded: even a second cancellation cannot stop it or let a BEGIN overtake it.
                await asyncio.shield(self.submit(_rollback))
                raise

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        conn, executor = self._conn, self._executor
        self._conn, self._executor = None, None
        if conn is not None and executor is not None:
            await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=True)


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SqliteJobStore(SqlJobStore):
    """Jobs, webhook inbox and pull counts in one SQLite file (default; one process, many workers)."""

    def __init__(self, path: str) -> None:
        """Use the database at ``path`` (created with its directory on first use)."""
        super().__init__(_SqliteBackend(path), description=f"sqlite:{path}")

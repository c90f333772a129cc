"""Durable state: jobs, deferred work, remembered health, the webhook inbox and pull counts.

Use :func:`open_job_store` with ``sqlite:///abs/path/jobs.db``, a plain file path, or
``postgresql://user@host:port/db``; the schema is created (or checked) when it opens. The store
it returns plays every role of :class:`sidecar.typing.JobStore`; each part is handed only the
role it uses (``JobQueue``, ``Deferrals``, ``Placements``, ``HealthLedger``, ``EventInbox``,
``PullCounts``). :func:`store_backend` gives the audit log and the bundle revisions the same
database through the lower :class:`Backend` seam, for their own tables.
"""

from __future__ import annotations

from sidecar.errors import ConfigError
from sidecar.store._core import SqlJobStore
from sidecar.store._postgres import PostgresJobStore
from sidecar.store._postgres import _PostgresBackend as PostgresBackend
from sidecar.store._protocols import Backend, Tx
from sidecar.store._sql import SCHEMA_VERSION, Dialect, timestamp
from sidecar.store._sqlite import SqliteJobStore
from sidecar.store._sqlite import _SqliteBackend as SqliteBackend

__all__ = [
    "SCHEMA_VERSION",
    "Backend",
    "Dialect",
    "PostgresJobStore",
    "SqlJobStore",
    "SqliteJobStore",
    "Tx",
    "open_job_store",
    "store_backend",
    "timestamp",
]


async def open_job_store(url: str) -> SqlJobStore:
    """Open (and migrate) the store named by ``url``: a SQLite path/URL or a PostgreSQL DSN."""
    store: SqlJobStore
    if url.startswith(("postgresql://", "postgres://")):
        store = PostgresJobStore(url)
    else:
        store = SqliteJobStore(_sqlite_path(url))
    return await store.open()


def store_backend(url: str) -> Backend:
    """Return an unconnected backend for ``url``, for tables kept beside the jobs (the audit log)."""
    if url.startswith(("postgresql://", "postgres://")):
        return PostgresBackend(url, 2)
    return SqliteBackend(_sqlite_path(url))


def _sqlite_path(url: str) -> str:
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise ConfigError("replication.store", f"{url!r} names no database file")
        return path
    if "://" in url or not url:
        raise ConfigError(
            "replication.store", f"{url!r} is neither a sqlite:// path nor a postgresql:// DSN"
        )
    return url

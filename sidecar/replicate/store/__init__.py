"""Durable replication jobs, the webhook inbox and pull counts: SQLite (default) or PostgreSQL.

Use :func:`open_job_store` with ``sqlite:///abs/path/jobs.db``, a plain file path, or
``postgresql://user@host:port/db``; the schema is created (or checked) when it opens.
"""

from __future__ import annotations

from sidecar.errors import ConfigError
from sidecar.replicate.store._core import SqlJobStore
from sidecar.replicate.store._postgres import PostgresJobStore
from sidecar.replicate.store._sql import SCHEMA_VERSION
from sidecar.replicate.store._sqlite import SqliteJobStore

__all__ = [
    "SCHEMA_VERSION",
    "PostgresJobStore",
    "SqlJobStore",
    "SqliteJobStore",
    "open_job_store",
]


async def open_job_store(url: str) -> SqlJobStore:
    """Open (and migrate) the store named by ``url``: a SQLite path/URL or a PostgreSQL DSN."""
    store: SqlJobStore
    if url.startswith(("postgresql://", "postgres://")):
        store = PostgresJobStore(url)
    elif url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path:
            raise ConfigError("replication.store", f"{url!r} names no database file")
        store = SqliteJobStore(path)
    elif "://" in url or not url:
        raise ConfigError(
            "replication.store", f"{url!r} is neither a sqlite:// path nor a postgresql:// DSN"
        )
    else:
        store = SqliteJobStore(url)
    return await store.open()

"""The store's lower seam: the database under it (SQLite or PostgreSQL), one transaction at a time.

These are not roles of the store (those are in :mod:`sidecar.typing`: ``JobQueue``, ``Deferrals``,
...): they are what the store itself, the audit log and the bundle revisions are written over, to
keep their own tables in the job store's database. ``Backend`` carries the store's ``Dialect``.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from sidecar.store._sql import Dialect

__all__ = ["Backend", "Tx"]


class Tx(Protocol):
    """One open transaction: statements use ``?`` placeholders whatever the database."""

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement and return its rows."""
        ...

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement and return how many rows it changed."""
        ...


class Backend(Protocol):
    """A database connection (or pool) able to run transactions (see :func:`store_backend`)."""

    dialect: Dialect

    async def connect(self) -> None:
        """Open connections."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Return a context running one transaction, committed on clean exit."""
        ...

    async def close(self) -> None:
        """Close connections."""
        ...

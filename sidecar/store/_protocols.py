"""The store package's seams: the database backend under the store, and the claim the pool needs."""

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
    """A database connection (or pool) able to run transactions."""

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

"""Every bundle revision the admin API published, with its exact bytes, so Rollback can re-publish.

Kept in the job store's database beside the audit log (``bundle_revisions`` and the one-row
``bundle_active``). A revision name stands for one archive: publishing other bytes under a name
already used is refused, so "roll back to X" is never ambiguous.
"""

# Statements are this module's constants; every value is bound.
# ruff: noqa: S608

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sidecar.errors import InvalidArgument, NotFound
from sidecar.store import Backend, timestamp

__all__ = ["RevisionStore", "StoredRevision"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bundle_revisions (
  revision TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  size_bytes BIGINT NOT NULL,
  published_at TEXT NOT NULL,
  published_by TEXT NOT NULL,
  changed_files TEXT NOT NULL,
  tenants TEXT NOT NULL,
  archive {blob} NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS bundle_revisions_published ON bundle_revisions (published_at)",
    """CREATE TABLE IF NOT EXISTS bundle_active (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision TEXT NOT NULL,
  activated_at TEXT NOT NULL
)""",
)
_LIST = "revision, digest, size_bytes, published_at, published_by, changed_files, tenants"


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """A published revision (``archive`` is loaded only by :meth:`RevisionStore.get`)."""

    revision: str
    digest: str
    size_bytes: int
    published_at: str
    published_by: str
    changed_files: tuple[str, ...]
    tenants: tuple[str, ...]
    archive: bytes = b""


class RevisionStore:
    """Stores published bundles and which one is active."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    async def create_schema(self) -> None:
        """Create the tables (idempotent); the backend must be connected."""
        async with self._backend.transaction() as tx:
            if self._backend.dialect.migrate_lock:
                await tx.fetch(self._backend.dialect.migrate_lock)
            for statement in _SCHEMA:
                await tx.execute(statement.format(blob=self._backend.dialect.blob_type))

    async def record(self, revision: StoredRevision) -> None:
        """Store ``revision`` (or keep the identical one already stored) and make it active."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch(
                "SELECT digest FROM bundle_revisions WHERE revision = ?", [revision.revision]
            )
            _refuse_reuse(revision.revision, revision.digest, rows)
            if not rows:
                # Replicas starting together record the same startup bundle at once: the
                # second insert keeps the first row, then is checked like any reuse.
                inserted = await tx.execute(
                    f"INSERT INTO bundle_revisions ({_LIST}, archive) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT (revision) DO NOTHING",
                    [revision.revision, revision.digest, revision.size_bytes,
                     revision.published_at or timestamp(), revision.published_by,
                     json.dumps(list(revision.changed_files)), json.dumps(list(revision.tenants)),
                     revision.archive],
                )  # fmt: skip
                if not inserted:
                    rows = await tx.fetch(
                        "SELECT digest FROM bundle_revisions WHERE revision = ?",
                        [revision.revision],
                    )
                    _refuse_reuse(revision.revision, revision.digest, rows)
            await self._activate(tx, revision.revision)

    async def check_unused(self, revision: str, digest: str) -> None:
        """Raise InvalidArgument when ``revision`` names other bytes than ``digest`` already."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch(
                "SELECT digest FROM bundle_revisions WHERE revision = ?", [revision]
            )
        _refuse_reuse(revision, digest, rows)

    async def activate(self, revision: str) -> None:
        """Mark an already stored ``revision`` active (after a rollback published it)."""
        async with self._backend.transaction() as tx:
            await self._activate(tx, revision)

    async def _activate(self, tx: Any, revision: str) -> None:
        updated = await tx.execute(
            "UPDATE bundle_active SET revision = ?, activated_at = ? WHERE id = 1",
            [revision, timestamp()],
        )
        if not updated:
            # Another replica may insert the row meanwhile: then this activation wins.
            await tx.execute(
                "INSERT INTO bundle_active (id, revision, activated_at) VALUES (1, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision, "
                "activated_at = excluded.activated_at",
                [revision, timestamp()],
            )

    async def active(self) -> str:
        """Return the active revision's name ("" before the first publish)."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch("SELECT revision FROM bundle_active WHERE id = 1")
        return str(rows[0][0]) if rows else ""

    async def get(self, revision: str) -> StoredRevision:
        """Return a stored revision with its archive; NotFound when it was never published."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT {_LIST}, archive FROM bundle_revisions WHERE revision = ?", [revision]
            )
        if not rows:
            raise NotFound(f"revision {revision!r} was never published through the admin API")
        return _revision(rows[0], archive=bytes(rows[0][-1]))

    async def prune(self, keep: int) -> int:
        """Delete archives beyond the newest ``keep`` revisions, never the active one; return how
        many. ``keep`` 0 keeps every revision."""
        if keep <= 0:
            return 0
        async with self._backend.transaction() as tx:
            active = await tx.fetch("SELECT revision FROM bundle_active WHERE id = 1")
            rows = await tx.fetch(
                "SELECT revision FROM bundle_revisions ORDER BY published_at DESC, revision DESC"
            )
            spared = {str(r[0]) for r in active}
            doomed = [str(r[0]) for r in rows[keep:] if str(r[0]) not in spared]
            for revision in doomed:
                await tx.execute("DELETE FROM bundle_revisions WHERE revision = ?", [revision])
        return len(doomed)

    async def list(self, *, limit: int = 100, tenant: str | None = None) -> list[StoredRevision]:
        """Return revisions newest first (only those changing ``tenant``), without archives."""
        async with self._backend.transaction() as tx:
            rows = await tx.fetch(
                f"SELECT {_LIST} FROM bundle_revisions ORDER BY published_at DESC, revision DESC"
            )
        revisions = [_revision(row) for row in rows]
        if tenant is not None:
            revisions = [r for r in revisions if tenant in r.tenants]
        return revisions[:limit]


def _refuse_reuse(revision: str, digest: str, rows: Sequence[Sequence[Any]]) -> None:
    if rows and str(rows[0][0]) != digest:
        raise InvalidArgument(
            "revision",
            f"{revision!r} was already published with digest {rows[0][0]}; "
            "give the new bundle its own revision",
        )


def _revision(row: Sequence[Any], archive: bytes = b"") -> StoredRevision:
    return StoredRevision(
        revision=str(row[0]),
        digest=str(row[1]),
        size_bytes=int(row[2]),
        published_at=str(row[3]),
        published_by=str(row[4]),
        changed_files=tuple(json.loads(str(row[5]))),
        tenants=tuple(json.loads(str(row[6]))),
        archive=archive,
    )

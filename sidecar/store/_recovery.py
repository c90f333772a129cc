"""The job store's recovery statements: parking, deferred work, placements, remembered health.

Each function runs inside a transaction the store opened (``tx``), so the store keeps one place
that opens connections and these stay plain SQL over the same ``?``-placeholder backend.
"""

# Statements are assembled only from this module's constant fragments; every value is bound.
# ruff: noqa: S608

from __future__ import annotations

from collections.abc import Collection, Sequence

from sidecar.errors import ErrorCode
from sidecar.model.jobs import DeferredWork
from sidecar.store._protocols import Tx

__all__ = [
    "RECOVERY_SCHEMA",
    "copies_made",
    "defer",
    "health_states",
    "park",
    "pending_deferrals",
    "placements",
    "prune_deferrals",
    "record_health",
    "requeue_parked",
    "resolve_deferral",
]

_DEFERRAL_FIELDS = """
  source_registry TEXT NOT NULL,
  source_repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  registry TEXT NOT NULL,
  tag TEXT NOT NULL,
  priority BIGINT NOT NULL,
  decision_id TEXT NOT NULL,
  request TEXT NOT NULL,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  resolved_at TEXT NOT NULL DEFAULT '',"""

RECOVERY_SCHEMA: tuple[str, ...] = (
    # One record per image, tag and deferred registry: two tags of one digest deferred to the
    # same registry are two routes to replay, not one record the second overwrites.
    f"""CREATE TABLE IF NOT EXISTS deferred_routes ({_DEFERRAL_FIELDS}
  PRIMARY KEY (source_registry, source_repository, digest, registry, tag)
)""",
    "CREATE INDEX IF NOT EXISTS deferred_routes_pending "
    "ON deferred_routes (resolved_at, registry, priority)",
    # The first layout, keyed without the tag: created if absent so that the copy below runs
    # on any store (no conditional DDL on both backends); pending rows move over, once.
    f"""CREATE TABLE IF NOT EXISTS deferrals ({_DEFERRAL_FIELDS}
  PRIMARY KEY (source_registry, source_repository, digest, registry)
)""",
    "INSERT INTO deferred_routes SELECT source_registry, source_repository, digest, registry, "
    "tag, priority, decision_id, request, created_at, updated_at, resolved_at FROM deferrals "
    "WHERE resolved_at = '' ON CONFLICT DO NOTHING",
    "DELETE FROM deferrals",
    """CREATE TABLE IF NOT EXISTS registry_health (
  registry TEXT PRIMARY KEY,
  healthy BIGINT NOT NULL,
  changed_at TEXT NOT NULL
)""",
    "CREATE INDEX IF NOT EXISTS jobs_digest ON jobs (digest, state)",
)

_RELEASE = "lease_owner = '', lease_expires = ''"
_DEFERRAL_COLUMNS = (
    "source_registry, source_repository, digest, registry, tag, priority, decision_id, request, "
    "updated_at"
)
_DEFERRAL_KEY = (
    "source_registry = ? AND source_repository = ? AND digest = ? AND registry = ? AND tag = ?"
)


def _marks(values: Collection[str]) -> str:
    return ", ".join("?" for _ in values)


async def park(tx: Tx, registry: str, *, error: str, now: str) -> int:
    """Park every queued job for ``registry``; return how many."""
    return await tx.execute(
        f"UPDATE jobs SET state = 'parked', error = ?, error_code = ?, updated_at = ?, {_RELEASE} "
        "WHERE destination_registry = ? AND state = 'queued'",
        [error, ErrorCode.REGISTRY_UNAVAILABLE.value, now, registry],
    )


async def requeue_parked(
    tx: Tx, registries: Collection[str], *, parked_before: str, now: str
) -> dict[str, int]:
    """Requeue parked jobs whose source and destination are both in ``registries``.

    Only jobs parked at or before ``parked_before`` move; attempts start afresh. Returns the
    number requeued per destination registry.
    """
    if not registries:
        return {}
    names = sorted(registries)
    where = (
        f"state = 'parked' AND destination_registry IN ({_marks(names)}) "
        f"AND source_registry IN ({_marks(names)}) AND updated_at <= ?"
    )
    params = [*names, *names, parked_before]
    rows = await tx.fetch(
        f"SELECT destination_registry, COUNT(*) FROM jobs WHERE {where} "
        "GROUP BY destination_registry",
        params,
    )
    if rows:
        await tx.execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, error = '', error_code = '', "
            f"not_before = ?, updated_at = ?, {_RELEASE} WHERE {where}",
            [now, now, *params],
        )
    return {str(r[0]): int(r[1]) for r in rows}


async def defer(tx: Tx, works: Sequence[DeferredWork], *, now: str) -> None:
    """Record (or refresh, as pending again) each deferred destination."""
    for w in works:
        await tx.execute(
            f"INSERT INTO deferred_routes ({_DEFERRAL_COLUMNS}, created_at, resolved_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, '') "
            "ON CONFLICT (source_registry, source_repository, digest, registry, tag) DO UPDATE SET "
            "priority = excluded.priority, "
            "decision_id = excluded.decision_id, request = excluded.request, "
            "updated_at = excluded.updated_at, resolved_at = ''",
            [
                w.source_registry,
                w.source_repository,
                w.digest,
                w.registry,
                w.tag,
                w.priority,
                w.decision_id,
                w.request,
                now,
                now,
            ],
        )


async def pending_deferrals(
    tx: Tx, registries: Collection[str], *, limit: int
) -> list[DeferredWork]:
    """Return unresolved deferred work for ``registries``, highest priority first."""
    if not registries:
        return []
    names = sorted(registries)
    rows = await tx.fetch(
        f"SELECT {_DEFERRAL_COLUMNS} FROM deferred_routes WHERE resolved_at = '' "
        f"AND registry IN ({_marks(names)}) "
        "ORDER BY priority DESC, created_at, digest, registry LIMIT ?",
        [*names, limit],
    )
    return [_deferral(r) for r in rows]


def _deferral(r: Sequence[object]) -> DeferredWork:
    return DeferredWork(
        source_registry=str(r[0]),
        source_repository=str(r[1]),
        digest=str(r[2]),
        registry=str(r[3]),
        tag=str(r[4]),
        priority=int(str(r[5])),
        decision_id=str(r[6]),
        request=str(r[7]),
        updated_at=str(r[8]),
    )


async def resolve_deferral(tx: Tx, work: DeferredWork, *, now: str) -> bool:
    """Mark ``work`` done unless it was deferred again since it was read; True when marked."""
    key = [work.source_registry, work.source_repository, work.digest, work.registry, work.tag]
    changed = await tx.execute(
        f"UPDATE deferred_routes SET resolved_at = ? WHERE {_DEFERRAL_KEY} "
        "AND resolved_at = '' AND updated_at = ?",
        [now, *key, work.updated_at],
    )
    return changed == 1


async def prune_deferrals(tx: Tx, *, resolved_before: str) -> int:
    """Delete deferred routes resolved at or before ``resolved_before``; return how many.

    Unresolved ones (``resolved_at = ''``) are never touched.
    """
    return await tx.execute(
        "DELETE FROM deferred_routes WHERE resolved_at <> '' AND resolved_at <= ?",
        [resolved_before],
    )


async def placements(tx: Tx, digest: str) -> list[tuple[str, str]]:
    """Return (registry, repository) pairs where a real copy of ``digest`` succeeded."""
    rows = await tx.fetch(
        "SELECT DISTINCT destination_registry, destination_repository FROM jobs "
        "WHERE digest = ? AND state = 'succeeded' AND dry_run = 0 AND kind = 'copy' "
        "ORDER BY destination_registry, destination_repository",
        [digest],
    )
    return [(str(r[0]), str(r[1])) for r in rows]


async def copies_made(
    tx: Tx, source_registry: str, source_repository: str, *, tag: str, digest: str
) -> list[tuple[str, str, str, str]]:
    """Return (digest, destination registry, repository, tag) of the real copies made from
    ``source_registry/source_repository`` at ``tag`` and/or ``digest`` ("" matches any)."""
    where = "source_registry = ? AND source_repository = ?"
    params = [source_registry, source_repository]
    if tag:
        where, params = f"{where} AND tag = ?", [*params, tag]
    if digest:
        where, params = f"{where} AND digest = ?", [*params, digest]
    rows = await tx.fetch(
        "SELECT DISTINCT digest, destination_registry, destination_repository, tag FROM jobs "
        f"WHERE {where} AND state = 'succeeded' AND dry_run = 0 AND kind = 'copy' "
        "ORDER BY destination_registry, destination_repository, tag, digest",
        params,
    )
    return [(str(r[0]), str(r[1]), str(r[2]), str(r[3])) for r in rows]


async def health_states(tx: Tx) -> dict[str, bool]:
    """Return the remembered health of every registry ever reached."""
    rows = await tx.fetch("SELECT registry, healthy FROM registry_health")
    return {str(r[0]): bool(r[1]) for r in rows}


async def record_health(tx: Tx, registry: str, healthy: bool, *, now: str) -> None:
    """Remember ``registry``'s health."""
    await tx.execute(
        "INSERT INTO registry_health (registry, healthy, changed_at) VALUES (?, ?, ?) "
        "ON CONFLICT (registry) DO UPDATE SET healthy = excluded.healthy, "
        "changed_at = excluded.changed_at",
        [registry, int(healthy), now],
    )

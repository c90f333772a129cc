"""The job store's logic, written once over a small transactional backend (SQLite or PostgreSQL).

Every write that belongs to a worker is guarded by ``lease_owner = worker AND state = running``:
a worker that lost its lease (it stalled past expiry and another worker took the job over)
changes nothing, so a zombie can never overwrite a job someone else finished.
"""

# Statements are assembled only from this module's constant fragments; every value is bound.
# ruff: noqa: S608

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

from sidecar.errors import ConfigError, InvalidArgument, NotFound
from sidecar.model.jobs import (
    TERMINAL_STATES,
    CopyProgress,
    CopyResult,
    DeferredWork,
    InboxEvent,
    Job,
    JobSpec,
    JobState,
    QueueStat,
)
from sidecar.store import _baselines as baselines
from sidecar.store import _inbox as inbox
from sidecar.store import _recovery as recovery
from sidecar.store._protocols import Backend, Tx
from sidecar.store._pulls import RecentPulls
from sidecar.store._sql import (
    JOB_COLUMNS,
    JOB_KEY,
    POST_MIGRATION,
    READ_COLUMNS,
    SCHEMA_VERSION,
    job_from_row,
    migration_statements,
    pull_hour,
    result_json,
    schema_statements,
    spec_params,
    timestamp,
)
from sidecar.telemetry import get_logger

__all__ = ["SqlJobStore"]

_log = get_logger("sidecar.store")

_COLS = ", ".join(JOB_COLUMNS)
_READ = ", ".join(READ_COLUMNS)
_KEY = " AND ".join(f"{c} = ?" for c in JOB_KEY)
_OWNED = "job_id = ? AND lease_owner = ? AND state = 'running'"
_INSERT = (
    f"INSERT INTO jobs ({_COLS}) VALUES ({', '.join('?' for _ in JOB_COLUMNS)}) "
    f"ON CONFLICT ({', '.join(JOB_KEY)}) DO NOTHING"
)
# A failed or skipped job is requeued with the new spec's details (a real run after a dry run
# must copy), keeping its attempts; queued/running/succeeded/parked jobs are left as they are.
_REQUEUE = (
    "UPDATE jobs SET state = 'queued', source_registry = ?, source_repository = ?, priority = ?, "
    "job_rank = ?, decision_id = ?, bundle_revision = ?, dry_run = ?, request = ?, error = '', "
    "error_code = '', decided_at = ?, "
    "bytes_done = 0, blobs_done = 0, not_before = ?, updated_at = ?, lease_owner = '', "
    f"lease_expires = '' WHERE {_KEY} AND state IN ('failed', 'skipped')"
)
# A resync (the destination was checked and lacks the image) also requeues finished and parked
# jobs, with a fresh attempt budget: the earlier success no longer holds.
_RESYNC = (
    "UPDATE jobs SET state = 'queued', attempts = 0, result = '', source_registry = ?, "
    "source_repository = ?, priority = ?, job_rank = ?, decision_id = ?, bundle_revision = ?, "
    "dry_run = ?, request = ?, decided_at = ?, "
    "error = '', error_code = '', bytes_done = 0, blobs_done = 0, not_before = ?, "
    f"updated_at = ?, lease_owner = '', lease_expires = '' WHERE {_KEY} "
    "AND state IN ('failed', 'skipped', 'succeeded', 'parked')"
)
_RELEASE = "lease_owner = '', lease_expires = ''"
# The column each migration step adds (table, column): a step whose column is already there is
# skipped — the tables were created by this version's DDL, or step 3's copy made them so.
_ADDS_COLUMN = {
    3: ("jobs", "kind"),
    5: ("jobs", "request"),
    6: ("events", "leased_by"),
    7: ("jobs", "decided_at"),
}
# Finished jobs past their retention, except the newest succeeded real copy of each placement
# (digest in a destination repository): :meth:`SqlJobStore.placements` must still find it.
_PRUNE_JOBS = (
    "DELETE FROM jobs WHERE state IN ('succeeded', 'failed', 'skipped') AND updated_at <= ? "
    "AND NOT (state = 'succeeded' AND dry_run = 0 AND kind = 'copy' AND NOT EXISTS "
    "(SELECT 1 FROM jobs newer WHERE newer.digest = jobs.digest AND newer.kind = 'copy' "
    "AND newer.destination_registry = jobs.destination_registry "
    "AND newer.destination_repository = jobs.destination_repository "
    "AND newer.state = 'succeeded' AND newer.dry_run = 0 AND (newer.updated_at > jobs.updated_at "
    "OR (newer.updated_at = jobs.updated_at AND newer.job_id > jobs.job_id))))"
)
#: The pull window when the caller names none (``policy.replication.pull_window``'s default).
DEFAULT_PULL_WINDOW_S = 7 * 86400.0


def _parse_timestamp(text: str) -> datetime:
    """Read back the fixed-width RFC3339 UTC text written by :func:`timestamp`."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class SqlJobStore:
    """Every role of :class:`sidecar.typing.JobStore` (``JobQueue``, ``Deferrals``, ``Placements``,
    ``HealthLedger``, ``EventInbox``, ``PullCounts``), written once for both databases."""

    def __init__(self, backend: Backend, *, description: str) -> None:
        """Wrap ``backend``; connections open (and the schema is created) on first use."""
        self._backend = backend
        self._description = description
        self._opened = False
        self._open_lock = asyncio.Lock()
        self._recent_pulls = RecentPulls()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._description})"

    async def open(self) -> SqlJobStore:
        """Connect and create or check the schema (idempotent); return ``self``."""
        if self._opened:
            return self
        async with self._open_lock:
            if not self._opened:
                await self._backend.connect()
                try:
                    async with self._backend.transaction() as tx:
                        await self._migrate(tx)
                except BaseException:
                    await self._backend.close()
                    raise
                self._opened = True
        return self

    async def _migrate(self, tx: Tx) -> None:
        dialect = self._backend.dialect
        if dialect.migrate_lock:
            # Replicas starting together must not race on CREATE TABLE IF NOT EXISTS.
            await tx.fetch(dialect.migrate_lock)
        for statement in (
            *schema_statements(dialect),
            *recovery.RECOVERY_SCHEMA,
            *baselines.BASELINE_SCHEMA,
        ):
            await tx.execute(statement)
        rows = await tx.fetch("SELECT version FROM schema_version")
        if not rows:
            await tx.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION])
        elif int(rows[0][0]) > SCHEMA_VERSION:
            raise ConfigError(
                "replication.store",
                f"job store schema version {rows[0][0]} is newer than this sidecar's "
                f"{SCHEMA_VERSION}; upgrade the sidecar",
                self._description,
            )
        elif int(rows[0][0]) < SCHEMA_VERSION:
            # An older store: bring its existing tables up, one version at a time, in this
            # transaction (a failure leaves the store at its old version, untouched).
            version = int(rows[0][0])
            now = await self._clock(tx)
            for step in range(version + 1, SCHEMA_VERSION + 1):
                added = _ADDS_COLUMN.get(step)
                if added is not None and await self._has_column(tx, *added):
                    continue  # the table was just created (or copied) at a later version
                if step == 4 and not await self._has_column(tx, "pulls", "pulls_count"):
                    continue  # no lifetime totals to carry over
                for statement in migration_statements(step, dialect, now):
                    await tx.execute(statement)
            await tx.execute("UPDATE schema_version SET version = ?", [SCHEMA_VERSION])
            _log.info("job store migrated", schema_from=version, schema_to=SCHEMA_VERSION)
        for statement in POST_MIGRATION:
            await tx.execute(statement)

    async def _has_column(self, tx: Tx, table: str, column: str) -> bool:
        """Whether ``table`` has ``column`` (a table created by this version's DDL already does)."""
        if self._backend.dialect.name == "sqlite":
            sql = "SELECT COUNT(*) FROM pragma_table_info(?) WHERE name = ?"
        else:
            sql = (
                "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = ? "
                "AND column_name = ? AND table_schema = current_schema()"
            )
        rows = await tx.fetch(sql, [table, column])
        return int(rows[0][0]) > 0

    def _tx(self) -> AbstractAsyncContextManager[Tx]:
        return self._backend.transaction()

    async def _clock(self, tx: Tx) -> datetime | None:
        """Return the database's time now (PostgreSQL), or None: the local clock is the database's.

        Leases and job times are written and compared on this clock only, so replicas whose own
        clocks disagree never take a live lease for an expired one (issue 15). SQLite is used
        by one process on one host: its clock is the local one.
        """
        sql = self._backend.dialect.now_sql
        if not sql:
            return None
        rows = await tx.fetch(sql)
        at = rows[0][0]
        if not isinstance(at, datetime):
            raise TypeError(f"the database clock answered {at!r}, not a timestamp")
        return at

    async def enqueue(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Persist jobs (idempotent by digest and destination) and return them, existing or new."""
        return await self._upsert(specs, _REQUEUE)

    async def requeue(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Like :meth:`enqueue`, but also requeue succeeded and parked jobs of these specs.

        For destinations found lacking the image (reconcile): the earlier copy no longer holds.
        """
        return await self._upsert(specs, _RESYNC)

    async def _upsert(self, specs: Sequence[JobSpec], requeue_sql: str) -> list[Job]:
        await self.open()
        jobs: list[Job] = []
        async with self._tx() as tx:
            now = timestamp(await self._clock(tx))
            for spec in specs:
                key = [
                    spec.kind,
                    spec.digest,
                    spec.destination_registry,
                    spec.destination_repository,
                    spec.tag,
                ]
                fresh = [str(uuid.uuid4()), *spec_params(spec), JobState.QUEUED.value]
                fresh += [0, 0, 0, 0, 0, "", "", now, now, now, now]
                await tx.execute(_INSERT, fresh)
                await tx.execute(
                    requeue_sql,
                    [
                        spec.source_registry,
                        spec.source_repository,
                        spec.priority,
                        spec.rank,
                        spec.decision_id,
                        spec.bundle_revision,
                        int(spec.dry_run),
                        spec.request,
                        now,
                        now,
                        now,
                        *key,
                    ],
                )
                rows = await tx.fetch(f"SELECT {_READ} FROM jobs WHERE {_KEY}", key)
                jobs.append(job_from_row(rows[0]))
        return jobs

    async def get(self, job_id: str) -> Job:
        """Return one job; raise NotFound when unknown."""
        await self.open()
        async with self._tx() as tx:
            rows = await tx.fetch(f"SELECT {_READ} FROM jobs WHERE job_id = ?", [job_id])
        if not rows:
            raise NotFound(f"job {job_id!r} does not exist")
        return job_from_row(rows[0])

    async def list_jobs(self, *, state: JobState | None = None, limit: int = 100) -> list[Job]:
        """Return jobs, newest first, optionally only those in ``state``."""
        await self.open()
        where, params = ("WHERE state = ?", [state.value]) if state is not None else ("", [])
        sql = f"SELECT {_READ} FROM jobs {where} ORDER BY created_at DESC, job_id DESC LIMIT ?"
        async with self._tx() as tx:
            rows = await tx.fetch(sql, [*params, limit])
        return [job_from_row(r) for r in rows]

    async def queue_stats(self) -> list[QueueStat]:
        """Return unfinished jobs (queued, running, parked) per destination and state, in one query.

        The ``state IN`` filter walks the ``jobs_runnable`` index (state first), so the cost
        follows the unfinished jobs, not the finished history kept for retention.
        """
        await self.open()
        async with self._tx() as tx:
            at = await self._clock(tx)
            now = timestamp(at)
            rows = await tx.fetch(
                "SELECT destination_registry, state, COUNT(*), MIN(CASE WHEN state = 'queued' "
                "AND not_before <= ? THEN not_before END) FROM jobs "
                "WHERE state IN ('queued', 'running', 'parked') "
                "GROUP BY destination_registry, state",
                [now],
            )
        moment = at or datetime.now(UTC)
        stats = []
        for registry, state, count, oldest in rows:
            waited = (moment - _parse_timestamp(str(oldest))).total_seconds() if oldest else 0.0
            stats.append(QueueStat(str(registry), str(state), int(count), max(0.0, waited)))
        return sorted(stats, key=lambda s: (s.registry, s.state))

    async def claim(
        self,
        worker_id: str,
        *,
        lease_s: float,
        limit: int = 1,
        skip_registries: Collection[str] = (),
    ) -> list[Job]:
        """Lease up to ``limit`` runnable jobs, highest priority first, never one leased elsewhere.

        Jobs whose destination is in ``skip_registries`` (at its concurrency limit) are left.
        """
        await self.open()
        skip = sorted(skip_registries)
        skip_sql = (
            f"AND destination_registry NOT IN ({', '.join('?' for _ in skip)})" if skip else ""
        )
        sql = (
            "UPDATE jobs SET state = 'running', lease_owner = ?, lease_expires = ?, "
            "attempts = attempts + 1, updated_at = ? WHERE job_id IN (SELECT job_id FROM jobs "
            "WHERE ((state = 'queued' AND not_before <= ?) OR "
            f"(state = 'running' AND lease_expires <= ?)) {skip_sql} "
            "ORDER BY priority DESC, job_rank, created_at, job_id "
            f"LIMIT ? {self._backend.dialect.lock_clause})"
            f" RETURNING {_READ}"
        )
        async with self._tx() as tx:
            at = await self._clock(tx)
            now = timestamp(at)
            params = [worker_id, timestamp(at, plus_s=lease_s), now, now, now, *skip, limit]
            rows = await tx.fetch(sql, params)
        jobs = [job_from_row(r) for r in rows]
        # RETURNING does not promise an order; callers rely on priority order.
        jobs.sort(key=lambda j: (-j.spec.priority, j.spec.rank, j.created_at, j.job_id))
        return jobs

    async def _owned_update(
        self,
        sets: str,
        params: Sequence[Any] | Callable[[datetime | None], Sequence[Any]],
        job_id: str,
        worker: str,
    ) -> bool:
        """Update a job ``worker`` still leases; ``params`` may be built from the store's clock."""
        async with self._tx() as tx:
            at = await self._clock(tx)
            values = params(at) if callable(params) else params
            changed = await tx.execute(
                f"UPDATE jobs SET {sets}, updated_at = ? WHERE {_OWNED}",
                [*values, timestamp(at), job_id, worker],
            )
        return changed == 1

    async def heartbeat(self, job_id: str, worker_id: str, *, lease_s: float) -> bool:
        """Extend a lease; return False when the lease was lost (another worker took the job)."""
        await self.open()
        return await self._owned_update(
            "lease_expires = ?", lambda at: [timestamp(at, plus_s=lease_s)], job_id, worker_id
        )

    async def progress(self, job_id: str, worker_id: str, progress: CopyProgress) -> None:
        """Record progress of a running job (ignored when the lease was lost)."""
        await self.open()
        sets = "bytes_total = ?, bytes_done = ?, blobs_total = ?, blobs_done = ?"
        values = [progress.bytes_total, progress.bytes_done]
        values += [progress.blobs_total, progress.blobs_done]
        if not await self._owned_update(sets, values, job_id, worker_id):
            _log.warning("job_lease_lost", job_id=job_id, worker_id=worker_id, write="progress")

    async def finish(
        self,
        job_id: str,
        worker_id: str,
        state: JobState,
        *,
        error: str = "",
        error_code: str = "",
        result: CopyResult | None = None,
    ) -> None:
        """Record a terminal (or parked) state and release the lease (ignored when lost)."""
        if state not in TERMINAL_STATES and state is not JobState.PARKED:
            raise InvalidArgument("state", f"{state.value} is neither terminal nor parked")
        await self.open()
        sets = f"state = ?, error = ?, error_code = ?, result = ?, {_RELEASE}"
        values = [state.value, error, error_code, result_json(result)]
        if not await self._owned_update(sets, values, job_id, worker_id):
            _log.warning("job_lease_lost", job_id=job_id, worker_id=worker_id, write="finish")

    async def redecided(
        self, job_id: str, worker_id: str, *, decision_id: str, bundle_revision: str
    ) -> None:
        """Record that a running job was decided again, and by which decision and revision."""
        await self.open()
        sets = "decision_id = ?, bundle_revision = ?, decided_at = ?"

        def values(at: datetime | None) -> list[Any]:
            return [decision_id, bundle_revision, timestamp(at)]

        if not await self._owned_update(sets, values, job_id, worker_id):
            _log.warning("job_lease_lost", job_id=job_id, worker_id=worker_id, write="redecided")

    async def retry_later(
        self, job_id: str, worker_id: str, *, delay_s: float, error: str, error_code: str
    ) -> None:
        """Put a job back in the queue, runnable again after ``delay_s`` (ignored when lost)."""
        await self.open()
        sets = f"state = 'queued', not_before = ?, error = ?, error_code = ?, {_RELEASE}"
        delay = max(0.0, delay_s)

        def values(at: datetime | None) -> list[Any]:
            return [timestamp(at, plus_s=delay), error, error_code]

        if not await self._owned_update(sets, values, job_id, worker_id):
            _log.warning("job_lease_lost", job_id=job_id, worker_id=worker_id, write="retry")

    async def unpark(self, registry: str) -> int:
        """Requeue every parked job for ``registry`` with fresh attempts; return how many."""
        await self.open()
        async with self._tx() as tx:
            now = timestamp(await self._clock(tx))
            return await tx.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, not_before = ?, updated_at = ?, "
                f"{_RELEASE} WHERE destination_registry = ? AND state = 'parked'",
                [now, now, registry],
            )

    async def park(self, registry: str, *, error: str) -> int:
        """Park every queued job for ``registry`` (it is unavailable); return how many."""
        await self.open()
        async with self._tx() as tx:
            now = timestamp(await self._clock(tx))
            return await recovery.park(tx, registry, error=error, now=now)

    async def requeue_parked(
        self, registries: Collection[str], *, parked_for_s: float = 0.0
    ) -> dict[str, int]:
        """Requeue jobs parked at least ``parked_for_s`` whose source and destination are in
        ``registries`` (healthy now); return how many per destination."""
        await self.open()
        async with self._tx() as tx:
            at = await self._clock(tx)
            return await recovery.requeue_parked(
                tx,
                registries,
                parked_before=timestamp(at, plus_s=-parked_for_s),
                now=timestamp(at),
            )

    async def defer(self, works: Sequence[DeferredWork]) -> None:
        """Record deferred destinations durably (refreshing ones already pending)."""
        if not works:
            return
        await self.open()
        async with self._tx() as tx:
            await recovery.defer(tx, works, now=timestamp())

    async def pending_deferrals(
        self, registries: Collection[str], *, limit: int = 1000
    ) -> list[DeferredWork]:
        """Return unresolved deferred work for ``registries``, highest priority first."""
        await self.open()
        async with self._tx() as tx:
            return await recovery.pending_deferrals(tx, registries, limit=limit)

    async def resolve_deferral(self, work: DeferredWork) -> bool:
        """Mark ``work`` done unless it was deferred again since it was read."""
        await self.open()
        async with self._tx() as tx:
            return await recovery.resolve_deferral(tx, work, now=timestamp())

    async def placements(self, digest: str) -> list[tuple[str, str]]:
        """Return (registry, repository) pairs a real copy of ``digest`` succeeded to."""
        await self.open()
        async with self._tx() as tx:
            return await recovery.placements(tx, digest)

    async def copies_made(
        self, source_registry: str, source_repository: str, *, tag: str = "", digest: str = ""
    ) -> list[tuple[str, str, str, str]]:
        """Return (digest, destination registry, repository, tag) of the real copies this
        sidecar made from ``source_registry/source_repository`` at ``tag`` and/or ``digest``."""
        await self.open()
        async with self._tx() as tx:
            return await recovery.copies_made(
                tx, source_registry, source_repository, tag=tag, digest=digest
            )

    async def health_states(self) -> dict[str, bool]:
        """Return the remembered health of every registry ever reached."""
        await self.open()
        async with self._tx() as tx:
            return await recovery.health_states(tx)

    async def record_health(self, registry: str, healthy: bool) -> None:
        """Remember ``registry``'s probed health (restored when the sidecar restarts)."""
        await self.open()
        async with self._tx() as tx:
            await recovery.record_health(tx, registry, healthy, now=timestamp())

    async def record_event(self, event_id: str, payload: bytes) -> bool:
        """Persist a webhook event; return False when the id was already recorded (duplicate)."""
        await self.open()
        async with self._tx() as tx:
            return await inbox.record_event(tx, event_id, payload)

    async def pending_events(
        self, limit: int = 100, *, due: datetime | None = None
    ) -> list[tuple[str, bytes]]:
        """Return recorded events due for an attempt at ``due`` (default now), oldest first.

        Events waiting for a retry later than ``due`` and dead-lettered events are left out in
        the query itself, so failing events never fill the ``limit`` and hide later ones.
        """
        await self.open()
        async with self._tx() as tx:
            return await inbox.pending_events(tx, limit, due)

    async def claim_events(
        self,
        owner: str,
        *,
        lease_s: float,
        limit: int = 100,
        due: datetime | None = None,
    ) -> list[tuple[str, bytes]]:
        """Lease up to ``limit`` events due at ``due`` (default now) to ``owner``, oldest first.

        An event another replica holds a live lease on is left out (PostgreSQL skips the rows it
        is claiming at this moment too), so of several replicas draining one inbox only one
        processes an event; a lease that expired (its replica died) is taken over. The lease is
        kept on the database's clock, in its own columns: the event stays ``pending`` for
        :meth:`pending_events` and :meth:`inbox_counts` while it is in flight.
        """
        await self.open()
        async with self._tx() as tx:
            return await inbox.claim_events(
                tx, owner, at=await self._clock(tx), lease_s=lease_s, limit=limit, due=due,
                lock=self._backend.dialect.lock_clause,
            )  # fmt: skip

    async def release_events(self, owner: str, event_ids: Collection[str] | None = None) -> int:
        """Give back the leases ``owner`` holds on ``event_ids`` (default: every one it holds)
        without processing them; return how many."""
        if event_ids is not None and not event_ids:
            return 0
        await self.open()
        async with self._tx() as tx:
            return await inbox.release_events(tx, owner, event_ids or ())

    async def fail_event(
        self,
        event_id: str,
        *,
        error: str,
        retry_in_s: float,
        max_attempts: int,
        count: bool = True,
    ) -> bool:
        """Record a failed attempt of an event; return True when it was dead-lettered.

        The event waits ``retry_in_s`` doubled per earlier failure (at most 15 minutes) before
        its next attempt; the ``max_attempts``-th failure dead-letters it instead (kept with
        ``error``, never retried automatically). ``count=False`` (the policy engine was down:
        no verdict on the event) waits ``retry_in_s`` without spending an attempt.
        """
        await self.open()
        async with self._tx() as tx:
            return await inbox.fail_event(
                tx, event_id, error=error, retry_in_s=retry_in_s, max_attempts=max_attempts,
                count=count, now=datetime.now(UTC),
            )  # fmt: skip

    async def inbox_events(self, limit: int = 100) -> list[InboxEvent]:
        """Return events not completed (pending, retrying or dead-lettered), oldest first."""
        await self.open()
        async with self._tx() as tx:
            return await inbox.inbox_events(tx, limit)

    async def inbox_counts(self) -> dict[str, int]:
        """Return how many events are ``pending``, ``retrying`` and ``dead`` (each present)."""
        await self.open()
        async with self._tx() as tx:
            return await inbox.inbox_counts(tx)

    async def complete_event(self, event_id: str) -> None:
        """Mark an event processed (its jobs or pull counts are persisted)."""
        await self.open()
        async with self._tx() as tx:
            await inbox.complete_event(tx, event_id)

    async def add_pulls(
        self, repository: str, region: str, count: int = 1, *, at: datetime | None = None
    ) -> None:
        """Add pulls of ``repository`` served in ``region`` to the hour of ``at`` (default now)."""
        await self.open()
        async with self._tx() as tx:
            hour = pull_hour(at or await self._clock(tx))
            await tx.execute(
                "INSERT INTO pull_buckets (repository, region, bucket, pulls_count) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (repository, region, bucket) DO UPDATE "
                "SET pulls_count = pull_buckets.pulls_count + excluded.pulls_count",
                [repository, region, hour, count],
            )
        self._recent_pulls.written(repository)

    async def pulls(
        self,
        repository: str,
        *,
        window_s: float = DEFAULT_PULL_WINDOW_S,
        now: datetime | None = None,
    ) -> dict[str, int]:
        """Return pulls of ``repository`` by region within the last ``window_s`` (to the hour).

        The window counts whole hours: the hour holding ``now - window_s`` is included, so a
        pull is counted for ``window_s`` and at most one hour more. Without ``now``, counts read
        at most a quarter of a second ago are reused unless this store wrote pulls of
        ``repository`` since (``store/_pulls.py``: a reconcile pass asks once per tag).
        """
        if now is None:
            return await self._recent_pulls.read(
                repository, window_s, lambda: self._read_pulls(repository, window_s, None)
            )
        return await self._read_pulls(repository, window_s, now)

    async def _read_pulls(
        self, repository: str, window_s: float, now: datetime | None
    ) -> dict[str, int]:
        await self.open()
        async with self._tx() as tx:
            since = pull_hour(now or await self._clock(tx), plus_s=-window_s)
            rows = await tx.fetch(
                "SELECT region, SUM(pulls_count) FROM pull_buckets "
                "WHERE repository = ? AND bucket >= ? GROUP BY region",
                [repository, since],
            )
        return {str(r[0]): int(r[1]) for r in rows if int(r[1])}

    async def prune(
        self,
        now: datetime | None = None,
        *,
        jobs_days: float = 0.0,
        events_days: float = 0.0,
        dead_events_days: float = 0.0,
        deferrals_days: float = 0.0,
        pull_window_s: float = 0.0,
    ) -> dict[str, int]:
        """Delete finished state older than its retention at ``now``; return how many per kind.

        Kinds: ``jobs`` (succeeded, failed or skipped, by last update), ``events`` (completed
        webhook events), ``dead_events`` (dead-lettered ones, by when they died) and
        ``deferrals`` (resolved deferred routes). A retention of 0 days keeps that kind forever.
        Queued, running and parked jobs, pending or retrying events and unresolved deferrals are
        never touched; nor is the newest succeeded real copy of each placement (digest into a
        destination repository), which :meth:`placements` answers from. ``pulls``: pull buckets
        wholly before the pull window (``pull_window_s``; 0 keeps them), which no read counts.
        """
        await self.open()
        at = now or datetime.now(UTC)

        def cutoff(days: float) -> str:
            return timestamp(at, plus_s=-days * 86400.0)

        pruned = dict.fromkeys(("jobs", "events", "dead_events", "deferrals", "pulls"), 0)
        async with self._tx() as tx:
            if pull_window_s > 0:
                pruned["pulls"] = await tx.execute(
                    "DELETE FROM pull_buckets WHERE bucket < ?",
                    [pull_hour(at, plus_s=-pull_window_s)],
                )
            if jobs_days > 0:
                pruned["jobs"] = await tx.execute(_PRUNE_JOBS, [cutoff(jobs_days)])
            if events_days > 0:
                pruned["events"] = await tx.execute(
                    "DELETE FROM events WHERE completed_at <> '' AND completed_at <= ?",
                    [cutoff(events_days)],
                )
            if dead_events_days > 0:
                pruned["dead_events"] = await tx.execute(
                    "DELETE FROM events WHERE completed_at = '' AND dead_at <> '' AND dead_at <= ?",
                    [cutoff(dead_events_days)],
                )
            if deferrals_days > 0:
                pruned["deferrals"] = await recovery.prune_deferrals(
                    tx, resolved_before=cutoff(deferrals_days)
                )
        return pruned

    async def acquire_lease(self, name: str, owner: str, *, ttl_s: float) -> bool:
        """Take (or renew) lease ``name`` for ``ttl_s`` on the database's clock; False if held."""
        await self.open()
        async with self._tx() as tx:
            at = await self._clock(tx)
            now, until = timestamp(at), timestamp(at, plus_s=ttl_s)
            changed = await tx.execute(
                "INSERT INTO leases (name, owner, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
                "expires = excluded.expires WHERE leases.owner = '' OR leases.expires <= ? "
                "OR leases.owner = excluded.owner",
                [name, owner, until, now],
            )
        return changed == 1

    async def release_lease(self, name: str, owner: str) -> None:
        """Give lease ``name`` up if ``owner`` holds it."""
        await self.open()
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE leases SET owner = '', expires = '' WHERE name = ? AND owner = ?",
                [name, owner],
            )

    async def save_baseline(self, revision: str, body: str) -> None:
        """Store the reconcile outcomes recorded under ``revision`` (the reconciler's text)."""
        await self.open()
        async with self._tx() as tx:
            await baselines.save_baseline(tx, revision, body, now=timestamp(await self._clock(tx)))

    async def load_baseline(self, revision: str) -> str | None:
        """Return the reconcile outcomes stored for ``revision``, or None."""
        await self.open()
        async with self._tx() as tx:
            return await baselines.load_baseline(tx, revision)

    async def lease_last_run(self, name: str) -> datetime | None:
        """When the run guarded by ``name`` last completed (its scheduled time), or None."""
        await self.open()
        async with self._tx() as tx:
            rows = await tx.fetch("SELECT last_run FROM leases WHERE name = ?", [name])
        if not rows or not rows[0][0]:
            return None
        return datetime.strptime(str(rows[0][0]), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)

    async def record_lease_run(self, name: str, owner: str, at: datetime) -> None:
        """Record the run scheduled at ``at`` as done, if ``owner`` still holds ``name``."""
        await self.open()
        async with self._tx() as tx:
            await tx.execute(
                "UPDATE leases SET last_run = ? WHERE name = ? AND owner = ?",
                [timestamp(at), name, owner],
            )

    async def close(self) -> None:
        """Close connections."""
        async with self._open_lock:
            if self._opened:
                self._opened = False
                await self._backend.close()

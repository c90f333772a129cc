"""Job kinds and executor order in the durable store (schema 3), on SQLite and PostgreSQL.

A delete job (the reconciler's removals) shares digest and destination with the copy job it
undoes, so the idempotency key includes the kind; jobs run by priority, then route rank, then age;
a store of schema 2 is migrated in place, its jobs kept.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from sidecar.model.jobs import JobSpec, JobState
from sidecar.store import SCHEMA_VERSION, SqlJobStore, open_job_store, store_backend

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

DIGEST = "sha256:" + "1" * 64


def _spec(
    destination: str = "eu", *, kind: str = "copy", priority: int = 0, rank: int = 0
) -> JobSpec:
    return JobSpec(
        "src", "team/app", DIGEST, destination, "team/app",
        tag="v1", priority=priority, kind=kind, rank=rank,
    )  # fmt: skip


async def test_a_delete_job_is_its_own_job_beside_the_copy_it_undoes(store: SqlJobStore) -> None:
    [copy] = await store.enqueue([_spec()])
    [claimed] = await store.claim("w", lease_s=30)
    await store.finish(claimed.job_id, "w", JobState.SUCCEEDED)
    [delete] = await store.enqueue([_spec(kind="delete")])
    assert delete.job_id != copy.job_id
    assert (delete.spec.kind, delete.state) == ("delete", JobState.QUEUED)
    [again] = await store.enqueue([_spec(kind="delete")])  # idempotent by kind too
    assert again.job_id == delete.job_id
    assert (await store.get(copy.job_id)).state is JobState.SUCCEEDED
    # Only copies are placements (where the pull resolver may send clients).
    [claimed_delete] = await store.claim("w", lease_s=30)
    await store.finish(claimed_delete.job_id, "w", JobState.SUCCEEDED)
    assert await store.placements(DIGEST) == [("eu", "team/app")]


async def test_jobs_run_by_priority_then_route_rank_then_age(store: SqlJobStore) -> None:
    # Enqueued in one call (one created_at for all): rank alone orders them, not the random ids.
    await store.enqueue([_spec("third", rank=3), _spec("first", rank=1), _spec("second", rank=2)])
    await store.enqueue([_spec("urgent", priority=90, rank=5)])
    await store.enqueue([_spec("later", rank=1)])
    order = []
    while claimed := await store.claim("w", lease_s=30):
        order.append(claimed[0].spec.destination_registry)
    assert order == ["urgent", "first", "later", "second", "third"]


async def test_a_schema_2_store_is_migrated_to_kinds_and_ranks_keeping_its_jobs(
    store_url: str,
) -> None:
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            for statement in _V2_JOBS:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO jobs (job_id, source_registry, source_repository, digest, "
                "destination_registry, destination_repository, tag, priority, decision_id, "
                "bundle_revision, dry_run, state, created_at, updated_at, not_before) "
                "VALUES ('old', 'src', 'team/app', ?, 'eu', 'team/app', 'v1', 5, 'd', 'r', 0, "
                "'succeeded', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', "
                "'2026-01-01T00:00:00.000000Z')",
                [DIGEST],
            )
    finally:
        await backend.close()
    store = await open_job_store(store_url)
    try:
        old = await store.get("old")
        assert (old.spec.kind, old.spec.rank, old.spec.priority, old.state) == (
            "copy", 0, 5, JobState.SUCCEEDED,
        )  # fmt: skip
        assert old.decided_at == ""  # unknown before schema 7: the guard reads created_at
        [delete] = await store.enqueue([_spec(kind="delete")])
        assert delete.job_id != "old" and delete.decided_at == delete.created_at
        [same] = await store.enqueue([_spec()])  # the old copy, found by the widened key
        assert same.job_id == "old"
    finally:
        await store.close()
    again = await open_job_store(store_url)
    try:
        assert (await again.get("old")).spec.kind == "copy"
    finally:
        await again.close()
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            assert await tx.fetch("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    finally:
        await backend.close()


async def test_a_schema_6_store_gains_when_each_job_was_decided(store_url: str) -> None:
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            for statement in _V6_JOBS:
                await tx.execute(statement)
            await tx.execute(
                "INSERT INTO jobs (job_id, source_registry, source_repository, digest, "
                "destination_registry, destination_repository, tag, priority, decision_id, "
                "bundle_revision, dry_run, state, created_at, updated_at, not_before, request) "
                "VALUES ('old', 'src', 'team/app', ?, 'eu', 'team/app', 'v1', 5, 'd', 'r', 0, "
                "'queued', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z', "
                "'2026-01-01T00:00:00.000000Z', '{}')",
                [DIGEST],
            )
    finally:
        await backend.close()
    store = await open_job_store(store_url)
    try:
        old = await store.get("old")
        assert (old.decided_at, old.created_at) == ("", "2026-01-01T00:00:00.000000Z")
        [claimed] = await store.claim("w", lease_s=30)
        await store.redecided(claimed.job_id, "w", decision_id="d2", bundle_revision="r2")
        assert (await store.get("old")).decided_at > old.created_at
    finally:
        await store.close()
    again = await open_job_store(store_url)  # opening a migrated store again changes nothing
    try:
        assert (await again.get("old")).spec.decision_id == "d2"
    finally:
        await again.close()


# The jobs table as schema version 6 had it: kinds, ranks and requests, no decision time.
_V6_JOBS = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (6)",
    """CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  source_registry TEXT NOT NULL,
  source_repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  destination_registry TEXT NOT NULL,
  destination_repository TEXT NOT NULL,
  tag TEXT NOT NULL,
  priority BIGINT NOT NULL,
  decision_id TEXT NOT NULL,
  bundle_revision TEXT NOT NULL,
  dry_run BIGINT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'copy',
  job_rank BIGINT NOT NULL DEFAULT 0,
  request TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  bytes_total BIGINT NOT NULL DEFAULT 0,
  bytes_done BIGINT NOT NULL DEFAULT 0,
  blobs_total BIGINT NOT NULL DEFAULT 0,
  blobs_done BIGINT NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  not_before TEXT NOT NULL,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  CONSTRAINT jobs_key UNIQUE (kind, digest, destination_registry, destination_repository, tag)
)""",
)


# The jobs table as schema version 2 created it.
_V2_JOBS = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (2)",
    """CREATE TABLE jobs (
  job_id TEXT PRIMARY KEY,
  source_registry TEXT NOT NULL,
  source_repository TEXT NOT NULL,
  digest TEXT NOT NULL,
  destination_registry TEXT NOT NULL,
  destination_repository TEXT NOT NULL,
  tag TEXT NOT NULL,
  priority BIGINT NOT NULL,
  decision_id TEXT NOT NULL,
  bundle_revision TEXT NOT NULL,
  dry_run BIGINT NOT NULL,
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  bytes_total BIGINT NOT NULL DEFAULT 0,
  bytes_done BIGINT NOT NULL DEFAULT 0,
  blobs_total BIGINT NOT NULL DEFAULT 0,
  blobs_done BIGINT NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT '',
  error_code TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  not_before TEXT NOT NULL,
  lease_owner TEXT NOT NULL DEFAULT '',
  lease_expires TEXT NOT NULL DEFAULT '',
  result TEXT NOT NULL DEFAULT '',
  UNIQUE (digest, destination_registry, destination_repository, tag)
)""",
    "CREATE INDEX jobs_runnable ON jobs (state, priority DESC, created_at, job_id)",
)


async def test_a_job_keeps_its_request_and_a_redecision_restamps_it(store: SqlJobStore) -> None:
    # The request a worker decides again when the bundle revision changed (schema 5).
    spec = _spec()
    stored = dataclasses.replace(spec, bundle_revision="r1", decision_id="d1", request='{"a":1}')
    [job] = await store.enqueue([stored])
    assert job.spec.request == '{"a":1}'
    assert job.decided_at == job.created_at  # schema 7: when its decision was made
    [claimed] = await store.claim("w", lease_s=30)
    await asyncio.sleep(0.01)
    await store.redecided(claimed.job_id, "w", decision_id="d2", bundle_revision="r2")
    await store.redecided(claimed.job_id, "other", decision_id="d3", bundle_revision="r3")
    again = await store.get(job.job_id)
    assert (again.spec.decision_id, again.spec.bundle_revision) == ("d2", "r2")
    assert again.decided_at > job.decided_at
    # A resync (reconcile) brings the new decision's request, and its time, along.
    await store.finish(claimed.job_id, "w", JobState.SKIPPED)
    await asyncio.sleep(0.01)
    [requeued] = await store.requeue([dataclasses.replace(stored, request='{"b":2}')])
    assert (requeued.state, requeued.spec.request) == (JobState.QUEUED, '{"b":2}')
    assert requeued.decided_at > again.decided_at

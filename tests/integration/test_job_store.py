"""The durable job store, the same behaviour on SQLite and on a real PostgreSQL 15."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sidecar.errors import ConfigError, NotFound
from sidecar.model.jobs import CopyProgress, JobSpec, JobState
from sidecar.store import SCHEMA_VERSION, SqlJobStore, open_job_store, store_backend

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]


def spec(n: int = 1, *, priority: int = 0, tag: str = "v1", dry_run: bool = False) -> JobSpec:
    """A spec for image ``n`` routed to registry ``eu``."""
    return JobSpec(
        "src", "team/app", f"sha256:{n:064x}", "eu", "team/app",
        tag=tag, priority=priority, dry_run=dry_run,
    )  # fmt: skip


async def test_jobs_and_events_survive_reopening(store: SqlJobStore, store_url: str) -> None:
    [job] = await store.enqueue([spec(1, priority=3)])
    assert await store.record_event("evt-1", b'{"events": []}')
    await store.add_pulls("team/app", "eu-west-1", 2)
    await store.close()
    again = await open_job_store(store_url)  # the schema step is idempotent
    try:
        assert await again.get(job.job_id) == job
        assert job.state is JobState.QUEUED and job.created_at.endswith("Z")
        assert await again.pending_events() == [("evt-1", b'{"events": []}')]
        assert await again.pulls("team/app") == {"eu-west-1": 2}
    finally:
        await again.close()


async def test_enqueue_is_idempotent_by_digest_destination_and_tag(store: SqlJobStore) -> None:
    first, other_tag = await store.enqueue([spec(1), spec(1, tag="v2")])
    [same] = await store.enqueue([spec(1, priority=9)])
    assert same == first  # unchanged, even the priority
    assert other_tag.job_id != first.job_id
    assert len(await store.claim("w1", lease_s=30, limit=2)) == 2
    await store.finish(first.job_id, "w1", JobState.FAILED, error="boom", error_code="internal")
    [requeued] = await store.enqueue([spec(1, priority=9)])
    assert requeued.job_id == first.job_id
    assert (requeued.state, requeued.attempts, requeued.error) == (JobState.QUEUED, 1, "")
    assert requeued.spec.priority == 9


async def test_succeeded_job_is_kept_and_dry_run_is_replaced_by_real_run(
    store: SqlJobStore,
) -> None:
    [done, dry] = await store.enqueue([spec(1), spec(2, dry_run=True)])
    for job in await store.claim("w1", lease_s=30, limit=2):
        state = JobState.SKIPPED if job.spec.dry_run else JobState.SUCCEEDED
        await store.finish(job.job_id, "w1", state)
    [still_done, real] = await store.enqueue([spec(1), spec(2)])
    assert still_done.state is JobState.SUCCEEDED and still_done.job_id == done.job_id
    assert real.job_id == dry.job_id
    assert real.state is JobState.QUEUED and not real.spec.dry_run


async def test_claim_takes_highest_priority_first_and_never_twice(store: SqlJobStore) -> None:
    low, high, mid = await store.enqueue([spec(1), spec(2, priority=50), spec(3, priority=10)])
    claimed = await store.claim("w1", lease_s=30, limit=2)
    assert [j.job_id for j in claimed] == [high.job_id, mid.job_id]
    assert all(j.state is JobState.RUNNING and j.attempts == 1 for j in claimed)
    assert [j.job_id for j in await store.claim("w2", lease_s=30, limit=5)] == [low.job_id]
    assert await store.claim("w3", lease_s=30) == []


async def test_claim_leaves_registries_at_their_limit(store: SqlJobStore) -> None:
    us_spec = JobSpec("src", "team/app", f"sha256:{2:064x}", "us", "team/app")
    _, us = await store.enqueue([spec(1, priority=5), us_spec])
    claimed = await store.claim("w1", lease_s=30, limit=2, skip_registries={"eu"})
    assert [j.job_id for j in claimed] == [us.job_id]


async def test_expired_lease_is_taken_over(store: SqlJobStore) -> None:
    [job] = await store.enqueue([spec(1)])
    await store.claim("crashed", lease_s=0.3)
    assert await store.claim("w2", lease_s=30) == []
    await asyncio.sleep(0.4)
    [taken] = await store.claim("w2", lease_s=30)
    assert (taken.job_id, taken.attempts) == (job.job_id, 2)
    assert not await store.heartbeat(job.job_id, "crashed", lease_s=30)
    assert await store.heartbeat(job.job_id, "w2", lease_s=30)


async def test_zombie_worker_cannot_touch_a_job_it_lost(store: SqlJobStore) -> None:
    [job] = await store.enqueue([spec(1)])
    await store.claim("zombie", lease_s=0.2)
    await asyncio.sleep(0.3)
    await store.claim("w2", lease_s=30)
    await store.finish(job.job_id, "zombie", JobState.FAILED, error="late", error_code="internal")
    await store.retry_later(job.job_id, "zombie", delay_s=0, error="late", error_code="x")
    await store.progress(job.job_id, "zombie", CopyProgress(9, 9, 9, 9))
    current = await store.get(job.job_id)
    assert (current.state, current.error, current.bytes_done) == (JobState.RUNNING, "", 0)
    await store.progress(job.job_id, "w2", CopyProgress(100, 40, 2, 1))
    await store.finish(job.job_id, "w2", JobState.SUCCEEDED)
    final = await store.get(job.job_id)
    assert (final.state, final.bytes_total, final.bytes_done) == (JobState.SUCCEEDED, 100, 40)
    await store.finish(job.job_id, "zombie", JobState.FAILED, error="later still")
    assert (await store.get(job.job_id)).state is JobState.SUCCEEDED


async def test_retry_later_delays_the_job_and_parked_jobs_wait_for_unpark(
    store: SqlJobStore,
) -> None:
    retried, parked = await store.enqueue([spec(1, priority=1), spec(2)])
    await store.claim("w1", lease_s=30, limit=2)
    await store.retry_later(retried.job_id, "w1", delay_s=0.3, error="503", error_code="e")
    await store.finish(parked.job_id, "w1", JobState.PARKED, error="down", error_code="u")
    assert await store.claim("w1", lease_s=30) == []
    await asyncio.sleep(0.4)
    [again] = await store.claim("w1", lease_s=30)
    assert (again.job_id, again.attempts, again.error) == (retried.job_id, 2, "503")
    assert await store.unpark("us") == 0
    assert await store.unpark("eu") == 1
    [back] = await store.list_jobs(state=JobState.QUEUED)
    assert (back.job_id, back.attempts) == (parked.job_id, 0)


async def test_get_and_list(store: SqlJobStore) -> None:
    jobs = []
    for n in range(3):
        jobs += await store.enqueue([spec(n)])
    listed = await store.list_jobs(limit=2)
    assert [j.job_id for j in listed] == [jobs[2].job_id, jobs[1].job_id]
    assert await store.list_jobs(state=JobState.RUNNING) == []
    with pytest.raises(NotFound):
        await store.get("no-such-job")


async def test_webhook_events_are_deduplicated_and_completed(store: SqlJobStore) -> None:
    assert await store.record_event("a", b"first")
    assert not await store.record_event("a", b"redelivered")
    assert await store.record_event("b", b"second")
    assert await store.pending_events() == [("a", b"first"), ("b", b"second")]
    await store.complete_event("a")
    assert await store.pending_events() == [("b", b"second")]
    assert not await store.record_event("a", b"after completion")


async def test_pull_counts_add_up_per_region(store: SqlJobStore) -> None:
    await store.add_pulls("team/app", "eu-west-1")
    await store.add_pulls("team/app", "eu-west-1", 4)
    await store.add_pulls("team/app", "us-east-1", 2)
    assert await store.pulls("team/app") == {"eu-west-1": 5, "us-east-1": 2}
    assert await store.pulls("team/other") == {}


async def test_store_urls_are_checked(tmp_path: Path) -> None:
    plain = await open_job_store(str(tmp_path / "plain.db"))
    await plain.close()
    assert (tmp_path / "plain.db").exists()
    with pytest.raises(ConfigError, match="neither"):
        await open_job_store("mysql://db/jobs")


async def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    first = await open_job_store(str(path))
    await first.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(ConfigError, match="newer"):
        await open_job_store(str(path))


async def test_two_postgres_replicas_claim_every_job_exactly_once(postgres_dsn: str) -> None:
    replicas = [await open_job_store(postgres_dsn) for _ in range(2)]
    try:
        await replicas[0].enqueue([spec(n, priority=n % 3) for n in range(60)])

        async def drain(store: SqlJobStore, worker: str) -> list[str]:
            taken: list[str] = []
            while batch := await store.claim(worker, lease_s=30, limit=3):
                taken += [j.job_id for j in batch]
            return taken

        # Two replicas, two concurrent claimers each, all racing for the same 60 jobs.
        drains = [drain(s, f"r{i}") for i, s in enumerate(replicas) for _ in range(2)]
        results = await asyncio.gather(*drains)
        everything = [job_id for taken in results for job_id in taken]
        assert len(everything) == 60 and len(set(everything)) == 60
        assert all(results), "both replicas should have claimed work"
    finally:
        for replica in replicas:
            await replica.close()


async def test_failing_events_wait_for_their_retry_and_are_dead_lettered(
    store: SqlJobStore,
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    for event_id in ("a", "b"):
        assert await store.record_event(event_id, event_id.encode())

    async def fail(error: str, *, count: bool = True) -> bool:
        return await store.fail_event(
            "a", error=error, retry_in_s=60.0, max_attempts=3, count=count
        )

    assert not await fail("boom 1")
    # "a" waits for its retry: left out by the query itself, so it cannot fill a batch.
    assert await store.pending_events(1) == [("b", b"b")]
    assert [i for i, _ in await store.pending_events(due=later)] == ["a", "b"]
    # Waiting for the policy engine spends no attempt.
    assert not await fail("opa down", count=False)
    assert not await fail("boom 2")
    assert await fail("boom 3")  # the third failure: dead
    assert await store.pending_events(due=later) == [("b", b"b")]
    assert not await fail("again")  # dead stays dead
    events = {e.event_id: e for e in await store.inbox_events()}
    dead = events["a"]
    assert (dead.state, dead.attempts, dead.last_error) == ("dead", 3, "boom 3")
    assert dead.dead_at and events["b"].state == "pending"
    assert await store.inbox_counts() == {"pending": 1, "retrying": 0, "dead": 1}
    await store.complete_event("b")
    assert [e.event_id for e in await store.inbox_events()] == ["a"]
    assert not await store.record_event("a", b"redelivered")  # kept: still a duplicate


async def test_a_version_1_store_is_migrated_in_place(store_url: str) -> None:
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            for statement in _V1_INBOX:
                await tx.execute(statement.replace("BLOB", backend.dialect.blob_type))
            await tx.execute(
                "INSERT INTO events (event_id, payload, received_at) VALUES (?, ?, ?)",
                ["old-1", b"payload", "2026-01-01T00:00:00.000000Z"],
            )
    finally:
        await backend.close()
    store = await open_job_store(store_url)
    try:
        assert await store.pending_events() == [("old-1", b"payload")]
        assert not await store.fail_event("old-1", error="x", retry_in_s=60, max_attempts=5)
        assert [(e.event_id, e.state, e.attempts) for e in await store.inbox_events()] == [
            ("old-1", "retrying", 1)
        ]
    finally:
        await store.close()
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            assert await tx.fetch("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
    finally:
        await backend.close()
    again = await open_job_store(store_url)  # opening a migrated store again changes nothing
    await again.close()


# The inbox as schema version 1 created it (the test then records an event in it).
_V1_INBOX = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "INSERT INTO schema_version (version) VALUES (1)",
    """CREATE TABLE events (
  event_id TEXT PRIMARY KEY,
  payload BLOB NOT NULL,
  received_at TEXT NOT NULL,
  completed_at TEXT NOT NULL DEFAULT ''
)""",
    "CREATE INDEX events_pending ON events (completed_at, received_at, event_id)",
)


class _SkewedClock:
    """A stand-in for ``datetime`` in :mod:`sidecar.store._sql` whose ``now`` is ``skew`` off."""

    def __init__(self, skew: timedelta) -> None:
        self.skew = skew

    def now(self, tz: object = None) -> datetime:
        return datetime.now(UTC) + self.skew


async def test_replicas_with_skewed_clocks_never_steal_live_leases(
    postgres_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Leases are compared on the database's clock, not each replica's own (issue 15, item 2)."""
    from sidecar.store import _sql  # noqa: PLC0415 - the store's time source, skewed per replica

    clock = _SkewedClock(timedelta(0))
    monkeypatch.setattr(_sql, "datetime", clock, raising=True)
    ahead, behind = await open_job_store(postgres_dsn), await open_job_store(postgres_dsn)
    try:
        clock.skew = timedelta(hours=-1)
        await ahead.enqueue([spec(1), spec(2)])  # runnable on both clocks
        # The replica an hour behind claims with a 60 s lease: on its own clock the lease would
        # already be long expired for the replica an hour ahead.
        clock.skew = timedelta(hours=-1)
        [held_behind] = await behind.claim("behind", lease_s=60)
        clock.skew = timedelta(hours=1)
        [held_ahead] = await ahead.claim("ahead", lease_s=60)
        assert held_ahead.job_id != held_behind.job_id, "stole a live lease"
        assert await ahead.claim("ahead", lease_s=60) == [], "stole a live lease"
        # The replica behind must not see the other's lease as expired either, after renewing.
        clock.skew = timedelta(hours=-1)
        assert await behind.heartbeat(held_behind.job_id, "behind", lease_s=60)
        clock.skew = timedelta(hours=1)
        assert await behind.claim("behind", lease_s=60) == []
        assert await ahead.heartbeat(held_ahead.job_id, "ahead", lease_s=60)
        assert await ahead.claim("ahead", lease_s=60) == [], "stole a renewed lease"
        clock.skew = timedelta(0)
        for job_id, owner in ((held_ahead.job_id, "ahead"), (held_behind.job_id, "behind")):
            assert (await ahead.get(job_id)).state is JobState.RUNNING
            assert await ahead.heartbeat(job_id, owner, lease_s=60)
    finally:
        await ahead.close()
        await behind.close()

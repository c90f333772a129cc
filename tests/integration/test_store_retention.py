"""Retention of finished state (issue 15, item 10): what the prune deletes, and what it never does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sidecar.governance.revisions import RevisionStore, StoredRevision
from sidecar.model.jobs import CopyResult, DeferredWork, JobSpec, JobState
from sidecar.store import SqlJobStore, store_backend

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]


def spec(n: int, dest: str = "eu", *, tag: str = "v1", dry_run: bool = False) -> JobSpec:
    """Image ``n`` to ``dest``."""
    return JobSpec("ci", "team/app", f"sha256:{n:064x}", dest, "team/app", tag, dry_run=dry_run)


def work(n: int) -> DeferredWork:
    """Image ``n`` deferred at ``eu``."""
    return DeferredWork("ci", "team/app", f"sha256:{n:064x}", "eu", "v1", 0, "d", "{}")


async def _finish(store: SqlJobStore, job_id: str, state: JobState) -> None:
    result = CopyResult(f"sha256:{0:064x}", 1, 1, 0, 0, 1, 0, 3)
    await store.finish(job_id, "w", state, result=result if state is JobState.SUCCEEDED else None)


async def test_prune_deletes_only_finished_state_past_its_retention(store: SqlJobStore) -> None:
    old_copy, new_copy, failed, skipped = await store.enqueue(
        [spec(1), spec(1, tag="v2"), spec(2), spec(3, dry_run=True)]
    )
    assert len(await store.claim("w", lease_s=30, limit=4)) == 4
    await _finish(store, old_copy.job_id, JobState.SUCCEEDED)
    await _finish(store, new_copy.job_id, JobState.SUCCEEDED)
    await _finish(store, failed.job_id, JobState.FAILED)
    await _finish(store, skipped.job_id, JobState.SKIPPED)
    [running] = await store.enqueue([spec(5)])
    assert [j.job_id for j in await store.claim("w", lease_s=30)] == [running.job_id]
    [parked] = await store.enqueue([spec(6, "down")])
    assert await store.park("down", error="down") == 1
    [queued] = await store.enqueue([spec(4)])
    for event_id in ("done", "pending", "retrying", "dead"):
        assert await store.record_event(event_id, b"{}")
    await store.complete_event("done")
    await store.fail_event("retrying", error="x", retry_in_s=0.05, max_attempts=5)
    assert await store.fail_event("dead", error="x", retry_in_s=0.05, max_attempts=1)
    await store.defer([work(1), work(2)])
    [first, unresolved] = await store.pending_deferrals({"eu"})
    assert await store.resolve_deferral(first)
    days = {"jobs_days": 30, "events_days": 30, "dead_events_days": 90, "deferrals_days": 30}
    nothing = {"jobs": 0, "events": 0, "dead_events": 0, "deferrals": 0, "pulls": 0}

    now = datetime.now(UTC)
    assert await store.prune(now, **days) == nothing  # all of it is recent
    assert await store.prune(now + timedelta(days=400)) == nothing  # 0 days: kept forever

    assert await store.prune(now + timedelta(days=31), **days) == {
        "jobs": 3, "events": 1, "dead_events": 0, "deferrals": 1, "pulls": 0,
    }  # fmt: skip
    left = {j.job_id: j.state for j in await store.list_jobs()}
    assert left == {
        new_copy.job_id: JobState.SUCCEEDED,  # the newest copy of its placement
        running.job_id: JobState.RUNNING,
        parked.job_id: JobState.PARKED,
        queued.job_id: JobState.QUEUED,
    }
    assert await store.placements(old_copy.spec.digest) == [("eu", "team/app")]
    assert sorted(e.event_id for e in await store.inbox_events()) == ["dead", "pending", "retrying"]
    assert [w.digest for w in await store.pending_deferrals({"eu"})] == [unresolved.digest]
    assert await store.heartbeat(running.job_id, "w", lease_s=30)  # its lease is untouched

    later = await store.prune(now + timedelta(days=91), **days)
    assert later == {"jobs": 0, "events": 0, "dead_events": 1, "deferrals": 0, "pulls": 0}
    assert sorted(e.event_id for e in await store.inbox_events()) == ["pending", "retrying"]
    assert len(await store.list_jobs()) == 4


async def test_revision_archives_beyond_keep_are_pruned_never_the_active_one(
    store_url: str,
) -> None:
    backend = store_backend(store_url)
    await backend.connect()
    try:
        revisions = RevisionStore(backend)
        await revisions.create_schema()
        for n in range(5):
            await revisions.record(
                StoredRevision(
                    f"r{n}", f"sha256:{n}", 1, f"2026-01-0{n + 1}T00:00:00.000000Z", "t", (), (),
                    b"archive",
                )
            )  # fmt: skip
        await revisions.activate("r0")  # rolled back to the oldest
        assert await revisions.prune(0) == 0  # 0 keeps every revision
        assert await revisions.prune(2) == 2
        assert [r.revision for r in await revisions.list()] == ["r4", "r3", "r0"]
        assert (await revisions.get("r0")).archive == b"archive"
        assert await revisions.active() == "r0"
        assert await revisions.prune(2) == 0
    finally:
        await backend.close()

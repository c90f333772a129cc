"""The job store's recovery records on SQLite and PostgreSQL: parking, deferrals, placements."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
from pathlib import Path

import pytest

from sidecar.model.jobs import CopyResult, DeferredWork, JobSpec, JobState
from sidecar.store import SqlJobStore, open_job_store

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]


def spec(n: int, dest: str = "eu", *, source: str = "ci", priority: int = 0) -> JobSpec:
    """Image ``n`` from ``source`` to ``dest``."""
    return JobSpec(source, "team/app", f"sha256:{n:064x}", dest, "team/app", "v1", priority)


def work(n: int, registry: str, priority: int) -> DeferredWork:
    """Image ``n`` deferred at ``registry``."""
    return DeferredWork("ci", "team/app", f"sha256:{n:064x}", registry, "v1", priority, "d", "{}")


async def _run(store: SqlJobStore, job_id: str, state: JobState) -> None:
    """Claim the only runnable job and finish it in ``state``."""
    [claimed] = await store.claim("w", lease_s=30)
    assert claimed.job_id == job_id
    result = CopyResult(claimed.spec.digest, 1, 1, 0, 0, 1, 0, 3)
    await store.finish(job_id, "w", state, result=result if state is JobState.SUCCEEDED else None)


async def test_parking_and_requeueing_follow_registry_health(store: SqlJobStore) -> None:
    jobs = await store.enqueue([spec(1, "eu"), spec(2, "eu", source="us"), spec(3, "us")])
    assert await store.park("eu", error="eu is down") == 2
    parked = await store.list_jobs(state=JobState.PARKED)
    assert {j.job_id for j in parked} == {jobs[0].job_id, jobs[1].job_id}
    assert {j.error_code for j in parked} == {"registry_unavailable"}
    # Only jobs whose source and destination are both healthy move; "us" (a source) is not.
    assert await store.requeue_parked({"eu", "ci"}) == {"eu": 1}
    # Parked only a moment ago: a sweep that waits a minute leaves it alone.
    assert await store.requeue_parked({"eu", "ci", "us"}, parked_for_s=60) == {}
    assert await store.requeue_parked({"eu", "ci", "us"}) == {"eu": 1}
    assert [j.state for j in await store.list_jobs()] == [JobState.QUEUED] * 3


async def test_deferred_work_is_kept_once_refreshed_and_resolved(store: SqlJobStore) -> None:
    await store.defer([work(1, "eu", 45), work(2, "eu", 90), work(3, "us", 60)])
    await store.defer([work(1, "eu", 75)])  # deferred again: one record, the new priority
    pending = await store.pending_deferrals({"eu", "us"})
    assert [(w.digest[-1], w.registry, w.priority) for w in pending] == [
        ("2", "eu", 90), ("1", "eu", 75), ("3", "us", 60),
    ]  # fmt: skip
    first = pending[0]
    assert await store.resolve_deferral(first)
    assert not await store.resolve_deferral(first)  # already done
    # A record deferred again after it was read is not resolved by the stale read.
    stale = pending[1]
    await asyncio.sleep(0.01)
    await store.defer([work(1, "eu", 75)])
    assert not await store.resolve_deferral(stale)
    assert [w.digest[-1] for w in await store.pending_deferrals({"eu"})] == ["1"]


async def test_two_tags_of_one_digest_deferred_to_one_registry_are_two_records(
    store: SqlJobStore,
) -> None:
    v2 = dataclasses.replace(work(1, "eu", 90), tag="v2")
    await store.defer([work(1, "eu", 45), v2, work(1, "@policy", 10)])
    pending = await store.pending_deferrals({"eu"})
    assert [(w.tag, w.priority) for w in pending] == [("v2", 90), ("v1", 45)]
    assert await store.resolve_deferral(pending[0])  # resolving one tag leaves the other
    assert [w.tag for w in await store.pending_deferrals({"eu"})] == ["v1"]
    assert [w.registry for w in await store.pending_deferrals({"@policy"})] == ["@policy"]


async def test_requeue_resyncs_finished_jobs_and_placements_list_real_copies(
    store: SqlJobStore,
) -> None:
    [done] = await store.enqueue([spec(1, "eu")])
    await _run(store, done.job_id, JobState.SUCCEEDED)
    assert await store.placements(done.spec.digest) == [("eu", "team/app")]
    # enqueue leaves a success alone; requeue (the copy was found missing) runs it again.
    assert [j.state for j in await store.enqueue([spec(1, "eu")])] == [JobState.SUCCEEDED]
    [again] = await store.requeue([spec(1, "eu", priority=7)])
    assert (again.job_id, again.state, again.attempts, again.result) == (
        done.job_id, JobState.QUEUED, 0, None,
    )  # fmt: skip
    assert again.spec.priority == 7
    assert await store.placements(done.spec.digest) == []


async def test_registry_health_is_remembered(store: SqlJobStore) -> None:
    assert await store.health_states() == {}
    await store.record_health("eu", False)
    await store.record_health("us", True)
    await store.record_health("eu", True)
    await store.record_health("eu", False)
    assert await store.health_states() == {"eu": False, "us": True}


async def test_pending_deferrals_of_the_first_layout_move_to_the_per_tag_table(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as old, old:
        old.execute(
            "CREATE TABLE deferrals (source_registry TEXT NOT NULL, source_repository TEXT NOT "
            "NULL, digest TEXT NOT NULL, registry TEXT NOT NULL, tag TEXT NOT NULL, priority "
            "BIGINT NOT NULL, decision_id TEXT NOT NULL, request TEXT NOT NULL, created_at TEXT "
            "NOT NULL, updated_at TEXT NOT NULL, resolved_at TEXT NOT NULL DEFAULT '', PRIMARY KEY "
            "(source_registry, source_repository, digest, registry))"
        )
        old.executemany(
            "INSERT INTO deferrals VALUES ('ci', 'team/app', ?, 'eu', 'v1', 5, 'd', '{}', "
            "'2026-01-01', '2026-01-01', ?)",
            [(f"sha256:{1:064x}", ""), (f"sha256:{2:064x}", "2026-01-02")],  # pending, resolved
        )
    for _ in range(2):  # opening again moves nothing twice
        store = await open_job_store(f"sqlite://{path}")
        try:
            pending = await store.pending_deferrals({"eu"})
            assert [(w.digest[-1], w.tag, w.priority) for w in pending] == [("1", "v1", 5)]
        finally:
            await store.close()

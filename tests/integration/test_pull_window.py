"""Pulls in a sliding window (issue 13, item 1), on SQLite and PostgreSQL.

``input.access`` counts the pulls of the last ``policy.replication.pull_window`` (default 7 days),
not lifetime totals: a region that stopped pulling stops weighing on consolidation once its pulls
leave the window. Counts are hourly buckets, pruned by the retention job past the window; a
schema 3 store's lifetime totals are carried into the hour it was upgraded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sidecar.enrich.access import PullAccessSource
from sidecar.model.decision import DecideRequest, ImageFacts, ImageRef, PolicyInput
from sidecar.store import SCHEMA_VERSION, SqlJobStore, open_job_store, store_backend

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

DAY = 86400.0
NOW = datetime.now(UTC)


async def test_pulls_count_only_within_the_window(store: SqlJobStore) -> None:
    await store.add_pulls("team/app", "us-east-1", 50, at=NOW - timedelta(days=10))
    await store.add_pulls("team/app", "us-east-1", 1, at=NOW - timedelta(days=2))
    await store.add_pulls("team/app", "eu-west-1", 3, at=NOW - timedelta(days=1))
    await store.add_pulls("team/app", "eu-west-1", 2)  # now
    await store.add_pulls("team/old", "eu-west-1", 9, at=NOW - timedelta(days=30))
    # The lifetime totals would say us-east-1 pulls most; this week eu-west-1 does.
    assert await store.pulls("team/app") == {"eu-west-1": 5, "us-east-1": 1}
    assert await store.pulls("team/app", window_s=30 * DAY) == {"eu-west-1": 5, "us-east-1": 51}
    assert await store.pulls("team/app", window_s=DAY / 2) == {"eu-west-1": 2}
    # A repository whose pulls all left the window has no access at all (not zeros).
    assert await store.pulls("team/old") == {}
    # Seen later, the same buckets slide out of the window.
    assert await store.pulls("team/app", now=NOW + timedelta(days=6, hours=12)) == {"eu-west-1": 2}


async def test_the_policy_input_gets_the_windowed_pulls(store: SqlJobStore) -> None:
    await store.add_pulls("team/app", "us-east-1", 40, at=NOW - timedelta(days=3))
    await store.add_pulls("team/app", "eu-west-1", 4)
    ref = ImageRef("eu", "team/app", "v1", "sha256:" + "a" * 64)
    draft = PolicyInput("2026-01-01T00:00:00Z", "reconcile", ImageFacts(ref), (), {})
    week = await PullAccessSource(store).contribute(DecideRequest(ref), draft)
    assert week.draft.access == {"eu-west-1": 4, "us-east-1": 40}
    day = await PullAccessSource(store, window_s=DAY).contribute(DecideRequest(ref), draft)
    assert day.draft.access == {"eu-west-1": 4}


async def test_the_prune_deletes_buckets_older_than_the_window(store: SqlJobStore) -> None:
    await store.add_pulls("team/app", "us-east-1", 7, at=NOW - timedelta(days=9))
    await store.add_pulls("team/app", "us-east-1", 1, at=NOW - timedelta(days=8))
    await store.add_pulls("team/app", "eu-west-1", 2, at=NOW - timedelta(days=1))
    assert (await store.prune(NOW))["pulls"] == 0  # no window given: kept
    assert (await store.prune(NOW, pull_window_s=7 * DAY))["pulls"] == 2
    assert await store.pulls("team/app", window_s=365 * DAY) == {"eu-west-1": 2}
    assert (await store.prune(NOW, pull_window_s=7 * DAY))["pulls"] == 0


async def test_a_schema_3_store_keeps_its_totals_for_one_window(store_url: str) -> None:
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            await tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await tx.execute("INSERT INTO schema_version (version) VALUES (3)")
            await tx.execute(
                "CREATE TABLE pulls (repository TEXT NOT NULL, region TEXT NOT NULL, "
                "pulls_count BIGINT NOT NULL, PRIMARY KEY (repository, region))"
            )
            await tx.execute(
                "INSERT INTO pulls (repository, region, pulls_count) VALUES "
                "('team/app', 'eu-west-1', 12), ('team/app', 'us-east-1', 3)"
            )
    finally:
        await backend.close()
    store = await open_job_store(store_url)
    try:
        assert await store.pulls("team/app") == {"eu-west-1": 12, "us-east-1": 3}
        await store.add_pulls("team/app", "eu-west-1")
        assert await store.pulls("team/app") == {"eu-west-1": 13, "us-east-1": 3}
        later = NOW + timedelta(days=8)
        assert await store.pulls("team/app", now=later) == {}  # the old totals aged out
    finally:
        await store.close()
    backend = store_backend(store_url)
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            assert await tx.fetch("SELECT version FROM schema_version") == [(SCHEMA_VERSION,)]
            assert SCHEMA_VERSION >= 4
    finally:
        await backend.close()
    again = await open_job_store(store_url)  # opening a migrated store again changes nothing
    try:
        assert await again.pulls("team/app") == {"eu-west-1": 13, "us-east-1": 3}
    finally:
        await again.close()


async def test_a_pull_written_right_after_a_read_is_counted_by_the_next_read(
    store: SqlJobStore,
) -> None:
    # Reads a moment apart are answered once (a reconcile pass asks per tag); a write of this
    # store must still show at once, as the webhook processor's pull events do.
    assert await store.pulls("team/app") == {}
    await store.add_pulls("team/app", "eu-west-1", 4)
    assert await store.pulls("team/app") == {"eu-west-1": 4}
    await store.add_pulls("team/app", "eu-west-1", 1, at=NOW - timedelta(days=1))
    assert await store.pulls("team/app") == {"eu-west-1": 5}

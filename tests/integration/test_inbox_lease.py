"""The webhook inbox's lease (issue 16, item 4), on SQLite and PostgreSQL.

Two replicas on one database drain one inbox: each claims events with a lease, so an event is
handed to one replica only; a replica that died leaves its lease to expire and another takes the
event over. The lease has its own columns, so an event in flight still shows as ``pending``
(``pending_events``, ``inbox_counts``, ``policy-sidecar jobs --events``). A schema 5 store gains
the columns in place. Replicas starting together record their startup bundle once.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from sidecar.config import RegistryConfig
from sidecar.errors import InvalidArgument
from sidecar.governance.revisions import RevisionStore, StoredRevision
from sidecar.model.decision import ImageRef, RegistryFacts
from sidecar.store import SCHEMA_VERSION, SqlJobStore, open_job_store, store_backend
from sidecar.webhooks import WebhookProcessor
from sidecar.webhooks.envelope import RegistryEvent, encode_stored

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
async def other(store_url: str, store: SqlJobStore) -> AsyncIterator[SqlJobStore]:
    """A second store instance on the same database: another replica's."""
    del store  # opened (and migrated) first
    replica = await open_job_store(store_url)
    try:
        yield replica
    finally:
        await replica.close()


def _payload(tag: str) -> bytes:
    event = RegistryEvent(
        id=f"ev-{tag}",
        action="push",
        repository="team/app",
        tag=tag,
        digest=DIGEST,
        media_type="application/vnd.oci.image.manifest.v1+json",
        source="distribution",
    )
    return encode_stored("eu", event)


async def _record(store: SqlJobStore, count: int) -> list[str]:
    ids = [f"ev-{n:03}" for n in range(count)]
    for n, event_id in enumerate(ids):
        assert await store.record_event(event_id, _payload(f"t{n:03}"))
    return ids


async def test_two_replicas_racing_claim_every_event_once(
    store: SqlJobStore, other: SqlJobStore
) -> None:
    ids = await _record(store, 60)
    claimed: Counter[str] = Counter()

    async def drain(replica: SqlJobStore, owner: str) -> None:
        while batch := await replica.claim_events(owner, lease_s=60, limit=3):
            claimed.update(event_id for event_id, _ in batch)
            await asyncio.sleep(0)

    await asyncio.gather(*(drain(s, f"r{n}") for n in range(3) for s in (store, other)))
    assert sorted(claimed) == ids
    assert set(claimed.values()) == {1}


async def test_a_leased_event_stays_pending_and_is_taken_over_when_the_lease_expires(
    store: SqlJobStore, other: SqlJobStore
) -> None:
    (first, second) = await _record(store, 2)
    assert [e for e, _ in await store.claim_events("a", lease_s=1.5, limit=1)] == [first]
    # In flight: still pending for every reader, but not handed to another replica.
    assert [e for e, _ in await other.pending_events()] == [first, second]
    assert await other.inbox_counts() == {"pending": 2, "retrying": 0, "dead": 0}
    assert [e.state for e in await other.inbox_events()] == ["pending", "pending"]
    assert [e for e, _ in await other.claim_events("b", lease_s=60)] == [second]
    assert await other.claim_events("c", lease_s=60) == []
    await asyncio.sleep(1.7)
    # "a" died holding its lease: the event is taken over, once.
    assert [e for e, _ in await other.claim_events("c", lease_s=60)] == [first]
    assert await store.claim_events("d", lease_s=60) == []
    await other.complete_event(first)
    await other.complete_event(second)
    assert await store.pending_events() == []
    assert await store.claim_events("e", lease_s=60) == []


async def test_failing_or_giving_back_an_event_ends_its_lease(
    store: SqlJobStore, other: SqlJobStore
) -> None:
    (first, second) = await _record(store, 2)
    assert len(await store.claim_events("a", lease_s=600)) == 2
    await store.fail_event(first, error="boom", retry_in_s=0.05, max_attempts=5)
    assert await store.release_events("a", [second]) == 1
    assert await store.release_events("b", [first]) == 0  # not b's to give back
    await asyncio.sleep(0.1)
    assert sorted(e for e, _ in await other.claim_events("b", lease_s=600)) == [first, second]
    assert await other.inbox_counts() == {"pending": 1, "retrying": 1, "dead": 0}


async def test_a_stopping_processor_gives_its_leases_back_at_once(
    store: SqlJobStore, other: SqlJobStore
) -> None:
    await _record(store, 3)
    registry = RegistryConfig(
        name="eu", facts=RegistryFacts("eu", "eu-west-1", "prod"), endpoint="http://127.0.0.1:1"
    )
    started, hold = asyncio.Event(), asyncio.Event()

    async def stuck(ref: ImageRef) -> None:
        started.set()
        await hold.wait()  # the sidecar stops while this push is being handled

    processor = WebhookProcessor(store, [registry], on_push=stuck, owner="one", lease_s=600)
    task = asyncio.create_task(processor.run())
    await asyncio.wait_for(started.wait(), 10)
    assert await other.claim_events("two", lease_s=600) == []  # all three are leased to "one"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Not after ten minutes: the next process takes them now.
    assert len(await other.claim_events("two", lease_s=600)) == 3


async def test_two_processors_on_one_inbox_push_each_event_once(
    store: SqlJobStore, other: SqlJobStore
) -> None:
    ids = await _record(store, 40)
    registry = RegistryConfig(
        name="eu", facts=RegistryFacts("eu", "eu-west-1", "prod"), endpoint="http://127.0.0.1:1"
    )
    pushed: Counter[str] = Counter()

    async def on_push(ref: ImageRef) -> None:
        await asyncio.sleep(0.01)  # a decision takes a moment: the replicas interleave
        pushed[ref.tag] += 1

    processors = [
        WebhookProcessor(replica, [registry], on_push=on_push, owner=name, batch=4)
        for replica, name in ((store, "one"), (other, "two"))
    ]
    done = await asyncio.gather(*(p.drain() for p in processors))
    assert sum(done) == len(ids)
    assert all(done)  # both replicas took a share
    assert sorted(pushed) == [f"t{n:03}" for n in range(len(ids))]
    assert set(pushed.values()) == {1}
    assert await store.pending_events() == []


async def test_a_schema_5_store_gains_the_lease_columns(store_url: str) -> None:
    backend = store_backend(store_url)
    blob = "BLOB" if backend.dialect.name == "sqlite" else "BYTEA"
    await backend.connect()
    try:
        async with backend.transaction() as tx:
            await tx.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            await tx.execute("INSERT INTO schema_version (version) VALUES (5)")
            await tx.execute(
                f"CREATE TABLE events (event_id TEXT PRIMARY KEY, payload {blob} NOT NULL, "
                "received_at TEXT NOT NULL, completed_at TEXT NOT NULL DEFAULT '', "
                "attempts BIGINT NOT NULL DEFAULT 0, next_attempt_at TEXT NOT NULL DEFAULT '', "
                "last_error TEXT NOT NULL DEFAULT '', dead_at TEXT NOT NULL DEFAULT '')"
            )
            await tx.execute(
                "INSERT INTO events (event_id, payload, received_at) VALUES (?, ?, ?)",
                ["old-1", _payload("old"), "2026-01-01T00:00:00.000000Z"],
            )
    finally:
        await backend.close()
    store = await open_job_store(store_url)
    try:
        assert [e for e, _ in await store.claim_events("a", lease_s=60)] == ["old-1"]
        assert await store.claim_events("b", lease_s=60) == []
        assert await store.inbox_counts() == {"pending": 1, "retrying": 0, "dead": 0}
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
    try:
        assert await again.claim_events("b", lease_s=60) == []
        assert await again.pending_events() != []
    finally:
        await again.close()


async def test_replicas_starting_together_record_their_startup_bundle_once(
    store_url: str,
) -> None:
    # Two sidecars started at once on one database each adopt the bundle they built (the same
    # revision and bytes): the second insert used to fail the second replica's startup.
    backends = [store_backend(store_url) for _ in range(2)]
    for backend in backends:
        await backend.connect()
    try:
        stores = [RevisionStore(b) for b in backends]
        await stores[0].create_schema()
        built = StoredRevision("r1", "sha256:1", 7, "", "sidecar:startup", (), (), b"archive")
        await asyncio.gather(*(s.record(built) for s in stores for _ in range(3)))
        assert [r.revision for r in await stores[1].list()] == ["r1"]
        assert await stores[0].active() == "r1"
        other = dataclasses.replace(built, digest="sha256:2")
        with pytest.raises(InvalidArgument):  # a name still stands for one archive
            await stores[1].record(other)
    finally:
        for backend in backends:
            await backend.close()

"""The Pub/Sub pull subscription against the real pstest fake: acknowledged only after the commit.

The fake is Go's ``cloud.google.com/go/pubsub/v2/pstest`` (tools/pstest-server) holding a ``gcr``
topic and a pull subscription; the puller runs on the real job store. While the store cannot
commit, a pulled message is released, not acknowledged, and comes back with the same id; once the
store works it is recorded once and acknowledged, so it is never delivered again. An unreadable
message is acknowledged (dropped) at once: redelivering it could never succeed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import orjson
import psycopg
import pytest
from prometheus_client import CollectorRegistry

from sidecar.config import PubSubSettings, RegistryConfig
from sidecar.model.decision import RegistryFacts
from sidecar.store import open_job_store
from sidecar.webhooks import PubSubPuller, WebhookMetrics
from tests.support.pubsub import PubSubAdmin, gcr_data, pstest_server

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

HOST = "europe-west1-docker.pkg.dev"
DIGEST = "sha256:" + "c4" * 32
REGISTRIES = (
    RegistryConfig(name="ar-eu", facts=RegistryFacts("ar-eu", "europe-west1", "ci"), endpoint=f"https://{HOST}"),
)  # fmt: skip


@pytest.fixture
def admin(tmp_path: Path) -> Iterator[PubSubAdmin]:
    """A running pstest fake and blocking clients to administer it."""
    with pstest_server(tmp_path / "pstest") as server:
        clients = PubSubAdmin(server.address)
        try:
            yield clients
        finally:
            clients.close()


async def _rename_table(store_url: str, old: str, new: str) -> None:
    """Take the inbox table away (or give it back) behind the store's back: a real store failure."""
    statement = f"ALTER TABLE {old} RENAME TO {new}"
    if store_url.startswith("sqlite://"):
        with sqlite3.connect(store_url.removeprefix("sqlite://")) as conn:
            conn.execute(statement)
        return
    async with await psycopg.AsyncConnection.connect(store_url, autocommit=True) as conn:
        await conn.execute(statement)


def _puller(admin: PubSubAdmin, subscription: str, store: object, woken: list[int]) -> PubSubPuller:
    settings = PubSubSettings(subscription=subscription, endpoint=admin.address, insecure=True)
    return PubSubPuller(
        settings,
        store,  # type: ignore[arg-type]
        REGISTRIES,
        WebhookMetrics(CollectorRegistry()),
        on_recorded=lambda: woken.append(1),
    )


async def test_a_message_is_acknowledged_only_once_it_is_committed(
    admin: PubSubAdmin, store_url: str
) -> None:
    subscription = await asyncio.to_thread(admin.create, "sidecar-pull")
    good = await asyncio.to_thread(
        admin.publish, gcr_data("INSERT", f"{HOST}/proj/repo/app", digest=DIGEST, tag="dev-3")
    )
    bad = await asyncio.to_thread(admin.publish, b"{not json")
    woken: list[int] = []

    store = await open_job_store(store_url)
    try:
        puller = _puller(admin, subscription, store, woken)
        try:
            # The store cannot commit (its inbox table is gone): the good message is released,
            # not acknowledged; the unreadable one is acknowledged and dropped.
            await store.pending_events()  # created and migrated
            await _rename_table(store_url, "events", "events_away")
            assert await puller.pull_once() == 2
            assert woken == []
            redelivered = await asyncio.to_thread(admin.pull, subscription)
            assert redelivered == [good], (redelivered, good, bad)

            # With the store back it is recorded once and acknowledged: never delivered again.
            await _rename_table(store_url, "events_away", "events")
            assert await puller.pull_once() == 1
            assert woken == [1]
            pending = await store.pending_events()
            assert [event_id for event_id, _ in pending] == [f"pubsub:{good}"]
            stored = orjson.loads(pending[0][1])
            assert stored["registry"] == "ar-eu"
            target = stored["event"]["target"]
            assert (target["repository"], target["tag"], target["digest"]) == (
                "proj/repo/app",
                "dev-3",
                DIGEST,
            )
            assert await puller.pull_once() == 0
        finally:
            await puller.close()
        assert await asyncio.to_thread(admin.pull, subscription) == []
    finally:
        await store.close()

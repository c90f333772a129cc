"""Artifact Registry events through a Pub/Sub pull subscription, end to end.

A real CNCF Distribution registry plays the Artifact Registry host (``ar``), a second one is the
``dev`` destination, and the pstest fake holds the ``gcr`` topic with a pull subscription the real
sidecar reads. The test pushes an image to ``ar`` and publishes the message Artifact Registry would;
the copy is read back from the destination by digest, and once the ack deadline has passed the
message has not come back (it was acknowledged): one copy, no duplicate delivery.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sidecar.oci import RegistryClients
from tests.support.images import push_image
from tests.support.pubsub import PubSubAdmin, gcr_data, pstest_server
from tests.support.registry import registry_server
from tests.support.security import attacked_sidecar, metric_value, registry_entry, sidecar_config
from tests.support.webhooks import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

REPOSITORY = "test-project/images/tool"
ACK_DEADLINE_S = 10  # Pub/Sub's minimum
RECEIVED = "policy_sidecar_webhook_events_received_total"


async def test_a_pulled_artifact_registry_push_is_copied_once(tmp_path: Path) -> None:
    with (
        registry_server(tmp_path / "ar") as ar,
        registry_server(tmp_path / "dev") as dev_server,
        pstest_server(tmp_path / "pstest") as pstest,
    ):
        admin = PubSubAdmin(pstest.address)
        try:
            subscription = await asyncio.to_thread(
                admin.create, "sidecar", ack_deadline_s=ACK_DEADLINE_S
            )
            doc = sidecar_config(
                [
                    registry_entry("ar", ar.url, environment="ci", region="us-east1"),
                    registry_entry("dev-us", dev_server.url, environment="dev"),
                ],
                replication={
                    "registry_enrichment": True,
                    "webhook": {
                        "listen": f"127.0.0.1:{free_port()}",
                        "secret": "distribution-secret",
                        "pubsub": {
                            "subscription": subscription,
                            "endpoint": pstest.address,
                            "insecure": True,
                        },
                    },
                },
            )
            async with attacked_sidecar(doc, tmp_path / "sidecar") as running:
                clients = RegistryClients(running.sidecar.config.registries)
                try:
                    image = await push_image(clients.get("ar"), REPOSITORY, tag="dev-2", seed=72)
                    await asyncio.to_thread(
                        admin.publish,
                        gcr_data(
                            "INSERT", f"{ar.host}/{REPOSITORY}", digest=image.digest, tag="dev-2"
                        ),
                    )
                    dev = clients.get("dev-us")

                    async def copied() -> bool:
                        return await dev.head_manifest(REPOSITORY, image.digest) is not None

                    await wait_for(copied, timeout_s=60)
                    assert (await dev.get_manifest(REPOSITORY, image.digest)).digest == image.digest
                    # Past the ack deadline an unacknowledged message would be delivered again.
                    await asyncio.sleep(ACK_DEADLINE_S + 2)
                    labels = {"action": "push", "source": "pubsub"}
                    assert (
                        await metric_value(running, RECEIVED, {**labels, "outcome": "recorded"})
                        == 1
                    )
                    assert (
                        await metric_value(running, RECEIVED, {**labels, "outcome": "duplicate"})
                        == 0
                    )
                    assert running.sidecar.parts is not None
                    jobs = list(await running.sidecar.parts.store.list_jobs())
                    assert [j.destination for j in jobs] == [f"dev-us/{REPOSITORY}:dev-2"]
                finally:
                    await clients.close()
        finally:
            admin.close()

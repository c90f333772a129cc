"""Artifact Registry events through a Pub/Sub push subscription, end to end.

A real CNCF Distribution registry plays the Artifact Registry host (``ar``); a second one is the
``dev`` destination. The test pushes an image to ``ar``, then POSTs what a push subscription on the
``gcr`` topic would deliver — the documented envelope, signed with an OIDC token whose keys the
sidecar fetches from a JWKS — to the real sidecar's ``/v1/registry/events/pubsub``. The copy is read
back from the destination by digest; the same message again makes no second copy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sidecar.oci import RegistryClients
from tests.support.images import push_image
from tests.support.pubsub import OidcIssuer, gcr_data, oidc_issuer, push_envelope
from tests.support.registry import RegistryServer, registry_server
from tests.support.security import attacked_sidecar, registry_entry, sidecar_config
from tests.support.sidecar import RunningSidecar
from tests.support.webhooks import free_port, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

SECRET = "distribution-secret"
PUSHER = "gcr-pusher@test-project.iam.gserviceaccount.com"
REPOSITORY = "test-project/images/app"


async def _post(url: str, body: bytes, token: str) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http, http.post(url, data=body, headers=headers) as got:
        return got.status, await got.json(content_type=None)


async def _jobs(running: RunningSidecar) -> list[Any]:
    assert running.sidecar.parts is not None
    return list(await running.sidecar.parts.store.list_jobs())


@pytest.fixture
async def world(
    tmp_path: Path,
) -> AsyncIterator[tuple[RunningSidecar, OidcIssuer, RegistryServer, str]]:
    """The two registries, the OIDC issuer and a sidecar verifying pushes with it."""
    with (
        registry_server(tmp_path / "ar") as ar,
        registry_server(tmp_path / "dev") as dev,
    ):
        async with oidc_issuer() as issuer:
            port = free_port()
            endpoint = f"http://127.0.0.1:{port}/v1/registry/events/pubsub"
            doc = sidecar_config(
                [
                    registry_entry("ar", ar.url, environment="ci", region="us-east1"),
                    registry_entry("dev-us", dev.url, environment="dev"),
                ],
                replication={
                    "registry_enrichment": True,
                    "webhook": {
                        "listen": f"127.0.0.1:{port}",
                        "secret": SECRET,
                        "propagate_deletes": "on",
                        "pubsub": {
                            "push": True,
                            "oidc": {
                                "audience": endpoint,
                                "jwks_url": issuer.jwks_url,
                                "service_account": PUSHER,
                            },
                        },
                    },
                },
            )
            async with attacked_sidecar(doc, tmp_path / "sidecar") as running:
                yield running, issuer, ar, endpoint


async def test_an_artifact_registry_push_is_copied_once_and_reads_back_by_digest(
    world: tuple[RunningSidecar, OidcIssuer, RegistryServer, str],
) -> None:
    running, issuer, ar, endpoint = world
    clients = RegistryClients(running.sidecar.config.registries)
    try:
        image = await push_image(clients.get("ar"), REPOSITORY, tag="dev-7", seed=71)
        envelope = push_envelope(
            gcr_data("INSERT", f"{ar.host}/{REPOSITORY}", digest=image.digest, tag="dev-7"),
            message_id="4242424242424242",
        )
        token = issuer.token(endpoint, email=PUSHER)

        status, answer = await _post(endpoint, envelope, token)
        assert (status, answer) == (200, {"recorded": 1})

        dev = clients.get("dev-us")

        async def copied() -> bool:
            return await dev.head_manifest(REPOSITORY, image.digest) is not None

        await wait_for(copied, timeout_s=60)
        # Read back by digest, and the tag the event named points at it.
        manifest = await dev.get_manifest(REPOSITORY, image.digest)
        assert manifest.digest == image.digest
        assert (await dev.get_manifest(REPOSITORY, "dev-7")).digest == image.digest

        async def finished() -> bool:
            return all(j.state == "succeeded" for j in await _jobs(running))

        # The manifest lands before the job records its success.
        await wait_for(finished, timeout_s=30)
        jobs = await _jobs(running)
        assert [(j.destination, j.state) for j in jobs] == [
            (f"dev-us/{REPOSITORY}:dev-7", "succeeded")
        ], jobs

        # Pub/Sub redelivers (at least once): the same message id is acknowledged, not re-run.
        status, answer = await _post(endpoint, envelope, issuer.token(endpoint, email=PUSHER))
        assert (status, answer) == (200, {"recorded": 0})
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert len(await _jobs(running)) == 1
            await asyncio.sleep(0.2)

        # The tag is deleted in Artifact Registry; its DELETE removes the sidecar's copy.
        assert await clients.get("ar").delete_manifest(REPOSITORY, image.digest)
        deleted = push_envelope(
            gcr_data("DELETE", f"{ar.host}/{REPOSITORY}", digest=image.digest, tag="dev-7"),
            message_id="4242424242424243",
        )
        status, answer = await _post(endpoint, deleted, issuer.token(endpoint, email=PUSHER))
        assert (status, answer) == (200, {"recorded": 1})

        async def removed() -> bool:
            return await dev.head_manifest(REPOSITORY, "dev-7") is None

        await wait_for(removed, timeout_s=60)
    finally:
        await clients.close()

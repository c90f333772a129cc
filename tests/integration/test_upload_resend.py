"""A blob upload whose completing PUT got through but whose answer was lost still counts as done.

aiohttp resends an idempotent PUT once when the connection drops before the answer; for the PUT
that completes an upload the resend finds no session (404 BLOB_UPLOAD_UNKNOWN). Found by the
slow-link fault scenario (tests/fault/network.py), where it failed jobs for good.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sidecar.oci import RegistryClient
from tests.support.images import layer_bytes, push_bytes, registry_config
from tests.support.oci_proxy import oci_proxy
from tests.support.registry import RegistryServer, registry_server

pytestmark = pytest.mark.integration


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[RegistryServer]:
    """One real docker-registry."""
    with registry_server(tmp_path / "registry") as running:
        yield running


async def test_lost_answer_to_the_completing_put_is_not_a_failed_upload(
    registry: RegistryServer,
) -> None:
    async with oci_proxy(registry.url) as proxy:
        client = RegistryClient(registry_config("proxied", proxy.url))
        try:
            proxy.faults.lose_upload_answers = 1
            blob = await push_bytes(client, "app", layer_bytes(1, 200_000), "application/x-test")
            # The registry completed the upload on the first PUT; the resend was answered 404.
            puts = [r for r in proxy.requests if r.startswith("PUT ") and "/blobs/uploads/" in r]
            assert len(puts) == 2 and puts[0] == puts[1]
            assert proxy.faults.lose_upload_answers == 0
            assert await client.blob_exists("app", blob["digest"])
        finally:
            await client.close()

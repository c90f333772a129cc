"""The rails of a ``propagate-delete`` job on real registries: it deletes the sidecar's copy only
once the source no longer holds the image, and never someone else's write.

Two CNCF Distribution registries (deletes enabled): ``src`` (the source) and ``dst`` (where the
sidecar copied ``team/app:v1``). :class:`~sidecar.replicate.delete.ImageDeleter` runs the job
exactly as the worker pool does; every refusal leaves ``dst`` as it was.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sidecar.model.jobs import JobSpec
from sidecar.oci import RegistryClients
from sidecar.replicate.delete import ImageDeleter, RemovalRefused
from tests.support.images import push_image, registry_config
from tests.support.registry import RegistryServer, registry_server

pytestmark = pytest.mark.timeout(120)

REPO = "team/app"


@dataclass(frozen=True)
class Rig:
    """The registries, our clients for them, and the digest pushed to both at ``v1``."""

    servers: dict[str, RegistryServer]
    clients: RegistryClients
    digest: str

    def job(self, tag: str = "v1") -> JobSpec:
        """The propagate-delete job of the copy ``dst/team/app:v1``."""
        return JobSpec("src", REPO, self.digest, "dst", REPO, tag, kind="propagate-delete")

    async def held(self) -> str:
        """The digest ``dst/team/app:v1`` holds ("" when absent)."""
        found = await self.clients.get("dst").head_manifest(REPO, "v1")
        return found.digest if found else ""


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """``src`` and ``dst`` both holding the same image at ``team/app:v1``."""
    with contextlib.ExitStack() as stack:
        servers = {n: stack.enter_context(registry_server(tmp_path / n)) for n in ("src", "dst")}
        clients = RegistryClients(registry_config(n, s.url) for n, s in servers.items())
        try:
            image = await push_image(clients.get("src"), REPO, tag="v1", seed=3)
            copy = await push_image(clients.get("dst"), REPO, tag="v1", seed=3)
            assert copy.digest == image.digest
            yield Rig(servers, clients, image.digest)
        finally:
            await clients.close()


async def test_the_copy_is_deleted_once_the_source_deleted_the_image(rig: Rig) -> None:
    await rig.clients.get("src").delete_manifest(REPO, rig.digest)
    result = await ImageDeleter(rig.clients).delete(rig.job())
    assert result.manifests_pushed == 1
    assert await rig.held() == ""
    # Again (a replayed event): already absent, nothing deleted, no error.
    assert (await ImageDeleter(rig.clients).delete(rig.job())).manifests_pushed == 0


async def test_a_source_still_holding_the_image_at_the_tag_keeps_the_copy(rig: Rig) -> None:
    with pytest.raises(RemovalRefused, match="still holds"):
        await ImageDeleter(rig.clients).delete(rig.job())
    assert await rig.held() == rig.digest


async def test_a_destination_tag_someone_else_rewrote_is_left_alone(rig: Rig) -> None:
    await rig.clients.get("src").delete_manifest(REPO, rig.digest)
    other = await push_image(rig.clients.get("dst"), REPO, tag="v1", seed=4)
    with pytest.raises(RemovalRefused, match="someone else's write"):
        await ImageDeleter(rig.clients).delete(rig.job())
    assert await rig.held() == other.digest


async def test_an_unreadable_source_removes_nothing(rig: Rig) -> None:
    rig.servers["src"].stop()
    with pytest.raises(RemovalRefused, match="cannot be read"):
        await ImageDeleter(rig.clients).delete(rig.job())
    assert await rig.held() == rig.digest


async def test_never_from_a_source_registry(rig: Rig) -> None:
    await rig.clients.get("src").delete_manifest(REPO, rig.digest)
    with pytest.raises(RemovalRefused, match="never removed from a source registry"):
        await ImageDeleter(rig.clients, sources=("dst",)).delete(rig.job())
    assert await rig.held() == rig.digest

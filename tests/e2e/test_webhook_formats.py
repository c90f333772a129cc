"""Registry events in each registry's own format, through a real sidecar and real registries.

Sources are real CNCF Distribution registries standing in for Harbor, Docker Hub, Quay, GitHub's
ghcr.io and GitLab's registry; the test posts each one's documented webhook payload (Harbor's
auth header, Hub's and Quay's URL token, GitHub's HMAC signature) to the sidecar's endpoint, and
every assertion is read back from the registries by digest. One source (``notary``) also sends
its own Distribution notifications, for the referrer push that re-opens a gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar.config import load_config
from sidecar.model.jobs import Job
from sidecar.oci import RegistryClients
from tests.support.images import push_image, push_scan_attestation
from tests.support.ports import free_port
from tests.support.registry import RegistryServer, registry_server
from tests.support.security import metric_value
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar
from tests.support.webhook_formats import (
    github_package,
    gitlab_envelope,
    harbor_event,
    hub_push,
    post_format,
    quay_push,
)

# clock: scan ages are measured against the sidecar's wall clock
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]

#: name → environment; sources are "ci" (never routed to), destinations dev/prod/sandbox.
REGISTRIES = {
    "harbor": "ci",
    "hub": "ci",
    "quay": "ci",
    "ghcr": "ci",
    "gitlab": "ci",
    "notary": "ci",
    "dev-us": "dev",
    "prod-us": "prod",
    "sandbox": "sandbox",
}
PROCESSED = "policy_sidecar_webhook_events_processed_total"
RECEIVED = "policy_sidecar_webhook_events_received_total"


@dataclass(frozen=True)
class World:
    """The running registries, the webhook URL and secret, and the config written for them."""

    servers: Mapping[str, RegistryServer]
    webhook_url: str
    secret: str
    root: Path

    def host(self, name: str) -> str:
        """host:port of registry ``name``."""
        return self.servers[name].host

    def config(self, run: str, **webhook: Any) -> Any:
        """The sidecar config for this world, with ``webhook`` settings added."""
        doc = {
            "registries": [
                {
                    "name": name,
                    "type": "harbor" if name == "harbor" else "generic",
                    "endpoint": server.url,
                    "region": "us-east-1",
                    "auth": {"type": "anonymous"},
                    "metadata": {"environment": REGISTRIES[name], "gdpr": False},
                }
                for name, server in self.servers.items()
            ],
            "policy": {
                "replication": {
                    "webhook": {
                        "listen": self.webhook_url.removeprefix("http://").partition("/")[0],
                        "secret": self.secret,
                        "retry_interval_s": 0.2,
                        **webhook,
                    },
                    "workers": 2,
                },
                "reconcile": {"sources": [n for n, env in REGISTRIES.items() if env == "ci"]},
            },
        }
        path = self.root / f"{run}.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
        return isolated_config(load_config(path), self.root / run)


@contextlib.contextmanager
def _world(root: Path) -> Iterator[World]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/registry/events"
    secret = secrets.token_urlsafe(16)
    with contextlib.ExitStack() as stack:
        servers = {
            name: stack.enter_context(
                registry_server(
                    root / "registries" / name,
                    notify_url=url if name == "notary" else None,
                    notify_secret=secret if name == "notary" else None,
                )
            )
            for name in REGISTRIES
        }
        yield World(servers, url, secret, root)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Every registry, stopped after the test."""
    with _world(tmp_path) as running:
        yield running


@pytest.fixture
async def clients(world: World) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry of the world."""
    pool = RegistryClients(world.config("clients").registries)
    try:
        yield pool
    finally:
        await pool.close()


async def _until(check: Any, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _holds(clients: RegistryClients, name: str, repository: str, digest: str) -> bool:
    return await clients.get(name).head_manifest(repository, digest) is not None


async def _copied(clients: RegistryClients, name: str, repository: str, digest: str) -> None:
    """Wait until ``name`` holds ``repository@digest``, then read the copy back by digest."""

    async def there() -> bool:
        return await _holds(clients, name, repository, digest)

    await _until(there, f"{name}/{repository}@{digest}")
    manifest = await clients.get(name).get_manifest(repository, digest)
    assert manifest.digest == digest


async def _jobs(running: RunningSidecar) -> list[Job]:
    assert running.sidecar.parts is not None
    return await running.sidecar.parts.store.list_jobs(limit=500)


async def _drained(running: RunningSidecar) -> None:
    """Wait until no event is pending and no job is queued or running."""
    assert running.sidecar.parts is not None
    store = running.sidecar.parts.store

    async def idle() -> bool:
        busy = [j for j in await _jobs(running) if j.state.value in ("queued", "running")]
        return not await store.pending_events() and not busy

    await _until(idle, "the inbox and the job queue to drain")


async def _at_least(
    running: RunningSidecar, name: str, labels: Mapping[str, str], want: float
) -> bool:
    return await metric_value(running, name, labels) >= want


def _fresh_scan() -> str:
    return f"{datetime.now(UTC) - timedelta(hours=1):%Y-%m-%dT%H:%M:%SZ}"


async def test_harbor_push_is_copied_once_even_when_replayed(
    world: World, clients: RegistryClients
) -> None:
    image = await push_image(clients.get("harbor"), "library/app", tag="dev-1", seed=11)
    event = harbor_event("PUSH_ARTIFACT", world.host("harbor"), "library/app",
                         digest=image.digest, tag="dev-1")  # fmt: skip
    async with running_sidecar(world.config("run")) as running:
        status, answer = await post_format(world.webhook_url, "harbor", world.secret, event)
        assert (status, answer) == (200, {"recorded": 1})
        await _copied(clients, "dev-us", "library/app", image.digest)
        await _drained(running)
        jobs = await _jobs(running)
        assert [(j.destination, j.state.value) for j in jobs] == [
            ("dev-us/library/app:dev-1", "succeeded")
        ]

        # Harbor redelivers the same event: acknowledged, not recorded, nothing copied again.
        status, answer = await post_format(world.webhook_url, "harbor", world.secret, event)
        assert (status, answer) == (200, {"recorded": 0})
        await _drained(running)
        assert [(j.job_id, j.attempts) for j in await _jobs(running)] == [
            (jobs[0].job_id, jobs[0].attempts)
        ]
        labels = {"source": "harbor", "action": "push"}
        assert await metric_value(running, RECEIVED, {**labels, "outcome": "duplicate"}) == 1
        assert await metric_value(running, PROCESSED, {**labels, "outcome": "pushed"}) == 1
        lag = "policy_sidecar_webhook_event_lag_seconds_count"
        assert await metric_value(running, lag, {"source": "harbor"}) == 1


async def test_harbor_scan_event_reopens_the_prod_gate(
    world: World, clients: RegistryClients
) -> None:
    harbor = clients.get("harbor")
    image = await push_image(harbor, "library/svc", tag="prod-2", seed=12)
    push = harbor_event("PUSH_ARTIFACT", world.host("harbor"), "library/svc",
                        digest=image.digest, tag="prod-2")  # fmt: skip
    async with running_sidecar(world.config("run")) as running:
        assert (await post_format(world.webhook_url, "harbor", world.secret, push))[0] == 200
        await _drained(running)
        # No scan: prod denies it (SCAN_MISSING), so nothing is copied anywhere.
        assert await _jobs(running) == []
        assert not await _holds(clients, "prod-us", "library/svc", image.digest)

        # The scanner attaches its result to the image; Harbor then says the scan completed.
        await push_scan_attestation(harbor, "library/svc", image.digest, completed_at=_fresh_scan())
        scanned = harbor_event("SCANNING_COMPLETED", world.host("harbor"), "library/svc",
                               digest=image.digest, tag="prod-2", scan=True)  # fmt: skip
        assert (await post_format(world.webhook_url, "harbor", world.secret, scanned))[0] == 200
        await _copied(clients, "prod-us", "library/svc", image.digest)
        labels = {"source": "harbor", "action": "scan", "outcome": "rescanned"}
        assert await metric_value(running, PROCESSED, labels) == 1


async def test_a_referrer_push_reopens_the_prod_gate(
    world: World, clients: RegistryClients
) -> None:
    """``notary`` sends real Distribution notifications: the attestation push is the trigger."""
    notary = clients.get("notary")
    async with running_sidecar(world.config("run")) as running:
        image = await push_image(notary, "team/api", tag="prod-3", seed=13)
        await _until(
            lambda: metric_value(running, PROCESSED, {"action": "push", "outcome": "pushed"}),
            "the tag push to be decided",
        )
        await _drained(running)
        assert not await _holds(clients, "prod-us", "team/api", image.digest)

        await push_scan_attestation(notary, "team/api", image.digest, completed_at=_fresh_scan())
        await _copied(clients, "prod-us", "team/api", image.digest)


async def _copy_then_delete_at_source(
    world: World, clients: RegistryClients, running: RunningSidecar, seed: int
) -> str:
    """Copy library/gone:dev-9 to dev-us through Harbor events, then delete it in "harbor"."""
    harbor = clients.get("harbor")
    image = await push_image(harbor, "library/gone", tag="dev-9", seed=seed)
    push = harbor_event("PUSH_ARTIFACT", world.host("harbor"), "library/gone",
                        digest=image.digest, tag="dev-9")  # fmt: skip
    assert (await post_format(world.webhook_url, "harbor", world.secret, push))[0] == 200
    await _copied(clients, "dev-us", "library/gone", image.digest)
    # Copies the sidecar did not make: the same image in sandbox, and in another dev-us repository.
    # (Not under another tag of the same repository: Distribution 2.8 cannot delete a tag, only
    # the digest, which that tag would keep; the deleter then leaves it and says so.)
    for name, repository in (("sandbox", "library/gone"), ("dev-us", "mirror/gone")):
        copy = await push_image(clients.get(name), repository, tag="dev-9", seed=seed)
        assert copy.digest == image.digest
    await _drained(running)
    await harbor.delete_manifest("library/gone", image.digest)
    deleted = harbor_event("DELETE_ARTIFACT", world.host("harbor"), "library/gone",
                           digest=image.digest, tag="dev-9")  # fmt: skip
    assert (await post_format(world.webhook_url, "harbor", world.secret, deleted))[0] == 200
    return image.digest


async def test_propagate_deletes_removes_only_the_sidecars_own_copy(
    world: World, clients: RegistryClients
) -> None:
    async with running_sidecar(world.config("run", propagate_deletes="on")) as running:
        digest = await _copy_then_delete_at_source(world, clients, running, 14)
        dev = clients.get("dev-us")

        async def removed() -> bool:
            return await dev.head_manifest("library/gone", "dev-9") is None

        await _until(removed, "the sidecar's copy dev-us/library/gone:dev-9 to be deleted")
        await _drained(running)
        # Copies it did not make stay: in another registry, and in another dev-us repository.
        for name, repository in (("sandbox", "library/gone"), ("dev-us", "mirror/gone")):
            kept = await clients.get(name).head_manifest(repository, "dev-9")
            assert kept is not None and kept.digest == digest, f"{name}/{repository}"
        deletes = [j for j in await _jobs(running) if j.spec.kind == "propagate-delete"]
        assert [(j.destination, j.state.value) for j in deletes] == [
            ("dev-us/library/gone:dev-9", "succeeded")
        ]


async def test_propagate_deletes_dry_run_lists_the_removal_and_deletes_nothing(
    world: World, clients: RegistryClients
) -> None:
    async with running_sidecar(world.config("run", propagate_deletes="dry-run")) as running:
        digest = await _copy_then_delete_at_source(world, clients, running, 15)

        async def listed() -> list[Job]:
            return [j for j in await _jobs(running) if j.spec.kind == "propagate-delete"]

        await _until(listed, "the dry-run delete job to be listed")
        await _drained(running)
        planned = await listed()
        assert [(j.destination, j.spec.dry_run, j.state.value) for j in planned] == [
            ("dev-us/library/gone:dev-9", True, "skipped")
        ]
        # What an operator sees through ListJobs: the kind says it is a removal, not a copy.
        listed_jobs = (await running.stub.ListJobs(pb.ListJobsRequest(), timeout=30)).jobs
        kinds = {(j.destination, j.kind, j.dry_run) for j in listed_jobs}
        assert ("dev-us/library/gone:dev-9", "propagate-delete", True) in kinds
        assert {j.kind for j in listed_jobs} == {"copy", "propagate-delete"}
        held = await clients.get("dev-us").head_manifest("library/gone", "dev-9")
        assert held is not None and held.digest == digest


async def test_propagate_deletes_off_plans_nothing(world: World, clients: RegistryClients) -> None:
    async with running_sidecar(world.config("run")) as running:
        digest = await _copy_then_delete_at_source(world, clients, running, 16)
        await _until(
            lambda: metric_value(running, PROCESSED, {"action": "delete", "outcome": "ignored"}),
            "the delete event to be processed",
        )
        await _drained(running)
        assert [j for j in await _jobs(running) if j.spec.kind != "copy"] == []
        assert await _holds(clients, "dev-us", "library/gone", digest)


async def test_hub_quay_github_and_gitlab_payloads_each_copy_their_image(
    world: World, clients: RegistryClients
) -> None:
    pushed = {
        name: await push_image(clients.get(name), "acme/app", tag=f"dev-{i}", seed=20 + i)
        for i, name in enumerate(("hub", "quay", "ghcr", "gitlab"))
    }
    payloads = {
        "hub": hub_push("acme/app", "dev-0"),
        "quay": quay_push(world.host("quay"), "acme/app", ["dev-1"]),
        "github": github_package(world.host("ghcr"), "acme/app", "dev-2", pushed["ghcr"].digest),
        "gitlab": gitlab_envelope(world.host("gitlab"), "acme/app", "dev-3",
                                  pushed["gitlab"].digest),
    }  # fmt: skip
    async with running_sidecar(world.config("run")) as running:
        for source, payload in payloads.items():
            # Docker Hub's payload names no registry host: ?registry= says which one it is.
            query = {"registry": "hub"} if source == "hub" else None
            status, answer = await post_format(
                world.webhook_url, source, world.secret, payload, query=query
            )
            assert (status, answer) == (200, {"recorded": 1}), source
        for image in pushed.values():
            await _copied(clients, "dev-us", "acme/app", image.digest)
        await _drained(running)
        copied = sorted(j.destination for j in await _jobs(running))
        assert copied == [f"dev-us/acme/app:dev-{i}" for i in range(4)]
        for source in ("hub", "quay", "github"):
            labels = {"source": source, "outcome": "pushed"}
            assert await metric_value(running, PROCESSED, labels) == 1, source


async def test_a_real_distribution_manifest_delete_removes_the_sidecars_copy(
    world: World, clients: RegistryClients
) -> None:
    """``notary`` notifies the sidecar itself: its push copies, its manifest delete propagates."""
    notary = clients.get("notary")
    async with running_sidecar(world.config("run", propagate_deletes="on")) as running:
        image = await push_image(notary, "team/tool", tag="dev-8", seed=17)
        await _copied(clients, "dev-us", "team/tool", image.digest)
        await _drained(running)
        await notary.delete_manifest("team/tool", image.digest)

        async def removed() -> bool:
            return not await _holds(clients, "dev-us", "team/tool", image.digest)

        await _until(removed, "the copy in dev-us to be deleted after the source's delete event")
        # Distribution sends a delete for the manifest and one per tag it had: both name the
        # same copy, which is one delete job.
        labels = {"source": "distribution", "action": "delete", "outcome": "deleted"}
        await _until(
            lambda: _at_least(running, PROCESSED, labels, 2), "both delete events to be processed"
        )
        await _drained(running)
        deletes = [j for j in await _jobs(running) if j.spec.kind == "propagate-delete"]
        assert [(j.destination, j.state.value) for j in deletes] == [
            ("dev-us/team/tool:dev-8", "succeeded")
        ]

"""The reconciler's removal rails on real registries: each refusal leaves the registry as it was.

Three CNCF Distribution registries (deletes enabled): ``src`` holds the originals, ``a`` and ``b``
hold copies. A plan is a value, so each test writes the removals a policy would ask for and
hands them to :class:`~sidecar.reconcile.Remover` with a real observation of the registries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.config import ReconcileSettings
from sidecar.errors import RegistryError
from sidecar.model.jobs import JobSpec, JobState
from sidecar.oci import RegistryClients
from sidecar.reconcile import Observer, Plan, PlanAction, Remover, Scope, waiter
from sidecar.replicate.copy import ImageCopier
from sidecar.replicate.delete import ImageDeleter
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.workers import WorkerPool
from sidecar.store import SqlJobStore, open_job_store
from tests.support.images import push_image, push_manifest, registry_config
from tests.support.registry import RegistryServer, registry_server

pytestmark = pytest.mark.timeout(120)

_NAMES = ("src", "a", "b")


@dataclass(frozen=True)
class Rig:
    """The registries, a client pool for them, the servers (to stop one), the job store and pool."""

    servers: dict[str, RegistryServer]
    clients: RegistryClients
    store: SqlJobStore
    pool: WorkerPool


@contextlib.contextmanager
def _servers(root: Path) -> Iterator[dict[str, RegistryServer]]:
    with contextlib.ExitStack() as stack:
        yield {n: stack.enter_context(registry_server(root / n)) for n in _NAMES}


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    """Three registries and our clients for them."""
    with _servers(tmp_path) as servers:
        clients = RegistryClients(registry_config(n, servers[n].url) for n in _NAMES)
        store = await open_job_store(f"sqlite://{tmp_path}/jobs.db")
        pool = WorkerPool(
            store,
            ImageCopier(clients),
            worker_id="rails",
            poll_interval_s=0.05,
            retry=RetryPolicy(max_attempts=1),
            deleter=ImageDeleter(clients, sources=("src",)),
        )
        await pool.start()
        try:
            yield Rig(servers, clients, store, pool)
        finally:
            await pool.stop()
            await store.close()
            await clients.close()


async def _image(rig: Rig, repository: str, tag: str, seed: int, where: tuple[str, ...]) -> str:
    digests = set()
    for name in where:
        client = rig.clients.get(name)
        pushed = await push_image(client, repository, seed=seed)
        await push_manifest(
            client, repository, (await client.get_manifest(repository, pushed.digest)).json, tag
        )
        digests.add(pushed.digest)
    (digest,) = digests
    return digest


def _remove(registry: str, repository: str, tag: str, digest: str, **extra: object) -> PlanAction:
    return PlanAction(
        "remove", registry, repository, tag, digest,
        source=f"src/{repository}:{tag}@{digest}", reasons=("NOT_GDPR",),
        decision_id="d-1", bundle_revision="r-1", **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def _remover(rig: Rig, *, max_removals: int = 10, protect: tuple[str, ...] = ()) -> Remover:
    settings = ReconcileSettings(sources=("src",), protect=protect)
    return Remover(
        rig.clients,
        rig.store,
        wait=waiter(rig.store, timeout_s=30),
        wake=rig.pool.wake,
        sources=("src",),
        scope=Scope(settings),
        max_removals=max_removals,
        metrics_registry=CollectorRegistry(),
    )


async def _observe(rig: Rig) -> object:
    return await Observer(rig.clients, ReconcileSettings(sources=("src",))).observe(_NAMES)


async def _holds(rig: Rig, name: str, repository: str, reference: str) -> str | None:
    found = await rig.clients.get(name).head_manifest(repository, reference)
    return found.digest if found is not None else None


async def test_a_planned_removal_deletes_the_copy_by_digest_and_nothing_else(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a", "b"))
    observation = await _observe(rig)
    plan = Plan((_remove("a", "web/app", "prod-1", digest),))
    removed, refused, stopped = await _remover(rig).apply(plan, observation)  # type: ignore[arg-type]
    assert [a.registry for a in removed] == ["a"] and refused == [] and not stopped
    assert await _holds(rig, "a", "web/app", digest) is None
    assert await _holds(rig, "b", "web/app", digest) == digest
    assert await _holds(rig, "src", "web/app", "prod-1") == digest


async def test_a_digest_planted_between_plan_and_apply_is_not_removed(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a"))
    observation = await _observe(rig)
    plan = Plan((_remove("a", "web/app", "prod-1", digest),))
    # Someone else writes another image at that tag after the plan was made.
    planted = await _image(rig, "web/app", "prod-1", 99, ("a",))
    removed, refused, _ = await _remover(rig).apply(plan, observation)  # type: ignore[arg-type]
    assert removed == []
    assert [why for _, why in refused] == [
        f"digest changed since the plan ({planted}): someone else's write"
    ]
    assert await _holds(rig, "a", "web/app", "prod-1") == planted
    assert await _holds(rig, "a", "web/app", digest) == digest


async def test_the_source_registry_and_protected_tags_are_never_removed(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "release-1", 1, ("src", "a"))
    observation = await _observe(rig)
    plan = Plan(
        (
            _remove("src", "web/app", "release-1", digest),
            _remove("a", "web/app", "release-1", digest),
        )
    )
    removed, refused, _ = await _remover(rig, protect=("release-*",)).apply(plan, observation)  # type: ignore[arg-type]
    assert removed == []
    assert [why for _, why in refused] == [
        "never removed from a source registry",
        "tag matches policy.reconcile.protect",
    ]
    assert await _holds(rig, "src", "web/app", digest) == digest
    assert await _holds(rig, "a", "web/app", digest) == digest


async def test_a_degraded_decision_never_removes(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a"))
    observation = await _observe(rig)
    plan = Plan((_remove("a", "web/app", "prod-1", digest, blocked="degraded decision"),))
    removed, refused, _ = await _remover(rig).apply(plan, observation)  # type: ignore[arg-type]
    assert removed == [] and [why for _, why in refused] == ["degraded decision"]
    assert await _holds(rig, "a", "web/app", digest) == digest


async def test_nothing_is_removed_while_the_source_cannot_be_read(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a"))
    observation = await _observe(rig)
    rig.servers["src"].stop()
    plan = Plan((_remove("a", "web/app", "prod-1", digest),))
    removed, refused, _ = await _remover(rig).apply(plan, observation)  # type: ignore[arg-type]
    assert removed == []
    assert refused[0][1].startswith("source src/web/app:prod-1@")
    assert "cannot be read" in refused[0][1]
    assert await _holds(rig, "a", "web/app", digest) == digest


async def test_max_removals_per_run_stops_the_run_and_says_so(rig: Rig) -> None:
    one = await _image(rig, "web/one", "prod-1", 1, ("src", "a"))
    two = await _image(rig, "web/two", "prod-1", 2, ("src", "a"))
    observation = await _observe(rig)
    plan = Plan((_remove("a", "web/one", "prod-1", one), _remove("a", "web/two", "prod-1", two)))
    removed, refused, stopped = await _remover(rig, max_removals=1).apply(plan, observation)  # type: ignore[arg-type]
    assert [a.repository for a in removed] == ["web/one"]
    assert stopped == "stopped after 1 removal(s): policy.reconcile.max_removals_per_run is 1"
    assert [(a.repository, why) for a, why in refused] == [("web/two", stopped)]
    assert await _holds(rig, "a", "web/one", one) is None
    assert await _holds(rig, "a", "web/two", two) == two


async def test_a_digest_another_tag_keeps_loses_only_the_removed_tag(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a"))
    client = rig.clients.get("a")
    await push_manifest(
        client, "web/app", (await client.get_manifest("web/app", digest)).json, "keep-me"
    )
    observation = await _observe(rig)
    plan = Plan((_remove("a", "web/app", "prod-1", digest),))
    removed, refused, _ = await _remover(rig).apply(plan, observation)  # type: ignore[arg-type]
    # Deleting by digest would take keep-me along; Distribution 2.8 cannot delete a tag alone.
    assert removed == []
    assert [why for _, why in refused] == [
        "failed: a/web/app:prod-1: the registry refuses to delete a tag, and the digest is kept "
        "by other tags (keep-me): left in place"
    ]
    assert await _holds(rig, "a", "web/app", "keep-me") == digest
    assert await _holds(rig, "a", "web/app", "prod-1") == digest


async def test_a_removal_is_a_durable_delete_job_recorded_with_its_decision(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a"))
    plan = Plan((_remove("a", "web/app", "prod-1", digest),))
    removed, _, _ = await _remover(rig).apply(plan, await _observe(rig))  # type: ignore[arg-type]
    assert len(removed) == 1
    [job] = await rig.store.list_jobs()
    assert (job.spec.kind, job.state, job.spec.decision_id) == ("delete", JobState.SUCCEEDED, "d-1")
    assert (job.spec.destination_registry, job.spec.tag, job.spec.digest) == ("a", "prod-1", digest)
    assert job.spec.source_registry == "src" and job.attempts == 1


async def test_the_delete_job_checks_again_when_it_runs_and_is_idempotent(rig: Rig) -> None:
    digest = await _image(rig, "web/app", "prod-1", 1, ("src", "a"))
    deleter = ImageDeleter(rig.clients, sources=("src",))
    spec = JobSpec("src", "web/app", digest, "a", "web/app", tag="prod-1", kind="delete")
    planted = await _image(rig, "web/app", "prod-1", 5, ("a",))
    with pytest.raises(RegistryError, match="someone else's write"):
        await deleter.delete(spec)
    assert await _holds(rig, "a", "web/app", "prod-1") == planted
    # Back at the planned digest: deleted once; a rerun (crash after the DELETE) changes nothing.
    client = rig.clients.get("a")
    await push_manifest(
        client, "web/app", (await client.get_manifest("web/app", digest)).json, "prod-1"
    )
    assert (await deleter.delete(spec)).manifests_pushed == 1
    assert await _holds(rig, "a", "web/app", digest) is None
    assert (await deleter.delete(spec)).manifests_pushed == 0
    assert await _holds(rig, "src", "web/app", digest) == digest
    with pytest.raises(RegistryError, match="never removed from a source registry"):
        await deleter.delete(JobSpec("src", "web/app", digest, "src", "web/app", tag="prod-1"))

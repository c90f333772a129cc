"""An activation re-plans only what the new revision changes (issue 13 item 5).

A serving sidecar on the five-registry fleet pulls signed bundles from the built-in HTTP bundle
store and applies a reconcile on each activation (``on_revision: apply``). Under the boot revision
``web/app`` is drift (routed to prod-eu and prod-us, copied nowhere) and ``web/api`` is in place.
Revision r1 adds one rule, for ``web/api`` only: the re-plan copies ``web/api`` to its new
repository and leaves ``web/app``'s unrelated drift alone (a whole plan would copy it). Revision
r2 changes nothing: nothing is planned. Registries are read back by digest.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import build_local_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.config import Config
from sidecar.oci import RegistryClients
from tests.support.admin import write_data
from tests.support.bundle_stores import BundleStore, bundle_store
from tests.support.fleet import Fleet
from tests.support.images import push_image, push_manifest, scanned_labels
from tests.support.opa import SigningKeys
from tests.support.pulling import pulling_config, signed_config
from tests.support.reconcile import holders as where
from tests.support.reconcile import reconcile_config
from tests.support.sidecar import RunningSidecar, running_sidecar

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]

_DEADLINE_S = 90.0
MIRROR_API = {"id": "mirror-api", "match": {"repository": "web/api"},
              "set": {"destination_repository": "mirror/{repository}"}}  # fmt: skip


async def _push(
    clients: RegistryClients, repository: str, tag: str, seed: int, *, to: tuple[str, ...]
) -> str:
    labels = scanned_labels()
    digests = set()
    for name in to:
        client = clients.get(name)
        image = await push_image(client, repository, seed=seed, labels=labels)
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, tag)
        digests.add(image.digest)
    (digest,) = digests
    return digest


async def _publish(
    store: BundleStore, config: Config, work: Path, revision: str, **data: object
) -> None:
    """Publish the config's bundle plus data overlays ({"replication.rules": [...]}) as ``revision``."""
    overlay = work / f"overlay-{revision}"
    overlay.mkdir(parents=True)
    for path, value in data.items():
        write_data(overlay, path.replace(".", "/"), value)
    bundle = dataclasses.replace(
        config.policy.bundle,
        data_dirs=(*config.policy.bundle.data_dirs, str(overlay)),
        output=str(work / f"{revision}.tar.gz"),
    )
    built = build_local_bundle(
        dataclasses.replace(config, policy=dataclasses.replace(config.policy, bundle=bundle)),
        revision=revision,
    ).bundle
    await store.publish(built)


async def _until_active(running: RunningSidecar, revision: str) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    request = pb.DecideRequest(image=pb.Image(registry="ci", repository="web/app", tag="prod-1.0"))
    while (answer := await running.stub.Decide(request)).bundle_revision != revision:
        assert time.monotonic() < deadline, f"still {answer.bundle_revision!r}, not {revision!r}"
        await asyncio.sleep(0.05)


async def _until_reconciled(running: RunningSidecar, revision: str) -> None:
    store = running.sidecar.parts.store if running.sidecar.parts else None
    assert store is not None
    deadline = time.monotonic() + _DEADLINE_S
    while await store.lease_last_run(f"reconcile-revision:{revision}") is None:
        assert time.monotonic() < deadline, f"no reconcile ran for revision {revision}"
        await asyncio.sleep(0.1)


def _gauge(running: RunningSidecar, name: str, labels: dict[str, str]) -> float | None:
    registry = running.sidecar.telemetry.metrics_registry
    return registry.get_sample_value(f"policy_sidecar_reconcile_{name}", labels)


def _applying_on_activation(fleet: Fleet, tmp_path: Path, store: BundleStore) -> Config:
    """A sidecar pulling signed bundles from ``store`` that applies a reconcile on activation."""
    keys = SigningKeys(*generate_keypair(tmp_path / "keys"))
    base = reconcile_config(fleet, tmp_path, on_revision="apply", wait_s=120)
    # No webhook: the registries change only through the reconciles under test.
    replication = base.policy.replication
    replication = dataclasses.replace(
        replication, webhook=dataclasses.replace(replication.webhook, listen="")
    )
    base = dataclasses.replace(
        base, policy=dataclasses.replace(base.policy, replication=replication)
    )
    return pulling_config(signed_config(keys, base), store, tmp_path / "state")


async def test_an_activation_applies_only_what_the_new_revision_changes(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-1.0", 1, to=("ci",))
    api = await _push(clients, "web/api", "prod-1.0", 2, to=("ci", "prod-eu", "prod-us"))
    async with bundle_store("http", tmp_path / "http") as store:
        config = _applying_on_activation(fleet, tmp_path, store)
        await _publish(store, config, tmp_path / "built", "boot")
        async with running_sidecar(config) as running:
            await _until_active(running, "boot")
            reconciler = running.sidecar.reconciler
            assert reconciler is not None
            # A dry run under the boot revision: web/app is drift, web/api is in place.
            whole = await reconciler.plan()
            assert {(a.kind, a.target) for a in whole.actions} == {
                ("copy", "prod-eu/web/app:prod-1.0"),
                ("copy", "prod-us/web/app:prod-1.0"),
                ("keep", "prod-eu/web/api:prod-1.0"),
                ("keep", "prod-us/web/api:prod-1.0"),
            }

            await _publish(store, config, tmp_path / "built", "r1",
                           **{"replication.rules": [MIRROR_API]})  # fmt: skip
            await _until_active(running, "r1")
            await _until_reconciled(running, "r1")
            assert await where(clients, "mirror/web/api", api) == {"prod-eu", "prod-us"}
            # web/app's drift is not the new revision's doing: left to a whole run.
            assert await where(clients, "web/app", app) == frozenset()
            # Both images were decided again; only web/api's outcome changed.
            assert _gauge(running, "revision_plan_images", {"what": "decided"}) == 2
            assert _gauge(running, "revision_plan_images", {"what": "changed"}) == 1
            assert _gauge(running, "revision_plan_actions", {"kind": "copy"}) == 2

            # A revision that changes nothing plans nothing (and copies nothing).
            await _publish(store, config, tmp_path / "built", "r2",
                           **{"replication.rules": [MIRROR_API]})  # fmt: skip
            await _until_active(running, "r2")
            await _until_reconciled(running, "r2")
            assert _gauge(running, "revision_plan_images", {"what": "decided"}) == 2
            assert _gauge(running, "revision_plan_images", {"what": "changed"}) == 0
            for kind in ("copy", "retag", "keep", "remove", "cleanup"):
                assert _gauge(running, "revision_plan_actions", {"kind": kind}) == 0
            assert await where(clients, "web/app", app) == frozenset()
            ok = running.sidecar.telemetry.metrics_registry.get_sample_value(
                "policy_sidecar_reconcile_triggered_total",
                {"trigger": "revision", "mode": "apply", "outcome": "ok"},
            )
            assert ok == 2


async def test_after_a_restart_an_activation_still_applies_only_what_the_revision_changes(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # The baseline (the boot revision's outcomes) is recorded by one process and read by the
    # next one from the job store: without it the activation plans whole and copies web/app.
    app = await _push(clients, "web/app", "prod-2.0", 3, to=("ci",))
    api = await _push(clients, "web/api", "prod-2.0", 4, to=("ci", "prod-eu", "prod-us"))
    async with bundle_store("http", tmp_path / "http") as store:
        config = _applying_on_activation(fleet, tmp_path, store)
        await _publish(store, config, tmp_path / "built", "boot")
        async with running_sidecar(config) as running:
            await _until_active(running, "boot")
            assert running.sidecar.reconciler is not None
            whole = await running.sidecar.reconciler.plan()  # recorded under "boot"
            assert ("copy", "prod-eu/web/app:prod-2.0") in {
                (a.kind, a.target) for a in whole.actions
            }
        async with running_sidecar(config) as restarted:  # the same job store, a new process
            await _until_active(restarted, "boot")
            await _publish(store, config, tmp_path / "built", "r1",
                           **{"replication.rules": [MIRROR_API]})  # fmt: skip
            await _until_active(restarted, "r1")
            await _until_reconciled(restarted, "r1")
            assert await where(clients, "mirror/web/api", api) == {"prod-eu", "prod-us"}
            # web/app's drift is not r1's doing: a whole plan (no baseline) would have copied it.
            assert await where(clients, "web/app", app) == frozenset()
            assert _gauge(restarted, "revision_plan_images", {"what": "changed"}) == 1

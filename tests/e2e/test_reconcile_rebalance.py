"""Rebalancing on real registries and a real OPA: pulls move, the consolidated copy follows.

The five-registry fleet (tests/support/fleet.py, deletes enabled) with the default bundle and a
cost threshold of 0 (bundle data ``replication.settings.cost.threshold``): every ``prod`` image is
consolidated to the one registry ranked first — most pulls in its region, then the lower egress
cost (``prod-us`` 0.05 before ``prod-eu`` 0.09). Shifting the recorded pulls to ``eu-west-1``
makes ``prod-eu`` first: the reconciler copies there, then removes the ``prod-us`` copy
(COST_CONSOLIDATED), in that order. Every assertion reads the registries back by digest.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from sidecar.app.reconcile import reconciler
from sidecar.config import Config, ReconcileSettings, job_store_url, load_config
from sidecar.model.jobs import JobState
from sidecar.oci import RegistryClients
from sidecar.store import open_job_store
from sidecar.telemetry import Telemetry
from tests.support.fleet import Fleet
from tests.support.images import push_image, push_manifest, scanned_labels
from tests.support.reconcile import holders as _where
from tests.support.sidecar import isolated_config

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]


def _consolidating_config(fleet: Fleet, tmp_path: Path) -> Config:
    data = tmp_path / "cost-data" / "replication" / "settings"
    data.mkdir(parents=True)
    (data / "data.json").write_text(json.dumps({"cost": {"threshold": 0}}), encoding="utf-8")
    config = isolated_config(load_config(fleet.config_path), tmp_path / "state")
    policy = config.policy
    return dataclasses.replace(
        config,
        policy=dataclasses.replace(
            policy,
            reconcile=ReconcileSettings(sources=("ci",)),
            bundle=dataclasses.replace(policy.bundle, data_dirs=(str(tmp_path / "cost-data"),)),
        ),
    )


async def test_shifting_pulls_moves_the_consolidated_copy_new_copy_first_then_removal(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    ci = clients.get("ci")
    image = await push_image(ci, "web/shop", seed=91, labels=scanned_labels())
    manifest = await ci.get_manifest("web/shop", image.digest)
    await push_manifest(ci, "web/shop", manifest.json, "prod-9")
    digest = image.digest
    config = _consolidating_config(fleet, tmp_path)
    store = await open_job_store(job_store_url(config.policy.replication, str(tmp_path / "state")))
    telemetry = Telemetry("reconcile-test")
    try:
        async with reconciler(config, telemetry, run_workers=True) as rec:
            # No pulls anywhere: the cheaper prod-us holds the one copy.
            _, first = await rec.run(dry_run=False)
            assert first is not None
            assert [(j.spec.destination_registry, j.state) for j in first.jobs] == [
                ("prod-us", JobState.SUCCEEDED)
            ]
            assert await _where(clients, "web/shop", digest) == {"prod-us"}

            # The image is now pulled in Europe: prod-eu ranks first, prod-us is dropped.
            await store.add_pulls("web/shop", "eu-west-1", 500)
            await store.add_pulls("web/shop", "us-east-1", 3)
            plan = await rec.plan()
            assert [(a.registry, a.digest) for a in plan.of("copy")] == [("prod-eu", digest)]
            assert [(a.registry, a.reasons, a.blocked) for a in plan.of("remove")] == [
                ("prod-us", ("COST_CONSOLIDATED",), "")
            ]
            # Planning alone moved nothing.
            assert await _where(clients, "web/shop", digest) == {"prod-us"}

            _, moved = await rec.run(dry_run=False)
            assert moved is not None and moved.refused == ()
            [copy] = moved.jobs
            assert (copy.spec.destination_registry, copy.state) == ("prod-eu", JobState.SUCCEEDED)
            assert [(a.registry, a.reasons) for a in moved.removed] == [
                ("prod-us", ("COST_CONSOLIDATED",))
            ]
            # Converged: the next pass keeps prod-eu and has nothing to move.
            again = await rec.plan()
            assert [a.registry for a in again.of("keep")] == ["prod-eu"]
            assert again.of("copy") == () and again.of("remove") == ()
        jobs = await store.list_jobs(limit=10)
    finally:
        await store.close()
        telemetry.shutdown()
    assert await _where(clients, "web/shop", digest) == {"prod-eu"}
    held = await clients.get("prod-eu").head_manifest("web/shop", "prod-9")
    assert held is not None and held.digest == digest
    source = await ci.head_manifest("web/shop", "prod-9")
    assert source is not None and source.digest == digest  # the source is never touched
    # The order, from the durable jobs: the new copy had succeeded before the delete was queued.
    [delete] = [j for j in jobs if j.spec.kind == "delete"]
    [eu_copy] = [
        j for j in jobs if j.spec.kind == "copy" and j.spec.destination_registry == "prod-eu"
    ]
    assert (delete.spec.destination_registry, delete.spec.digest, delete.state) == (
        "prod-us", digest, JobState.SUCCEEDED,
    )  # fmt: skip
    assert eu_copy.state is JobState.SUCCEEDED
    assert eu_copy.updated_at <= delete.created_at

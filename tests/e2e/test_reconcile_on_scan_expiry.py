"""A serving sidecar reconciles by itself when a scan expires (``policy.reconcile.on_scan_expiry``).

The five-registry fleet (tests/support/fleet.py) and the default bundle on the sidecar's managed
OPA; no schedule, no webhook: nothing but the expiry trigger reconciles. ``web/app:prod-7.0`` was
scanned just under the bundle's maximum age (7 days) before the test, so its scan expires a few
seconds in; ``web/app:prod-7.1`` has a fresh scan. The trigger's first plan (plan only) learns the
instant from the policy; at the instant the trigger applies: the fresh image is copied, the
expired one is not (SCAN_EXPIRED) — read back from the registries and the sidecar's metrics.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.oci import RegistryClients
from tests.support.fleet import Fleet
from tests.support.images import push_image, push_manifest, scanned_labels
from tests.support.reconcile import holders, reconcile_config
from tests.support.sidecar import running_sidecar

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]

# Enough for the sidecar to start and make its first plan before the scan expires.
_MARGIN_S = 35
_DEADLINE_S = 120.0


async def _push(clients: RegistryClients, tag: str, seed: int, labels: dict[str, str]) -> str:
    client = clients.get("ci")
    image = await push_image(client, "web/app", seed=seed, labels=labels)
    manifest = await client.get_manifest("web/app", image.digest)
    await push_manifest(client, "web/app", manifest.json, tag)
    return image.digest


def _sample(metrics: CollectorRegistry, name: str, **labels: str) -> float:
    return metrics.get_sample_value(f"policy_sidecar_{name}", labels) or 0.0


async def _until(check: Callable[[], bool], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + _DEADLINE_S
    while not check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.2)


async def test_a_scan_expiring_triggers_an_applying_reconcile_that_withholds_it(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    completed = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=7)
    completed += dt.timedelta(seconds=_MARGIN_S)
    expires = completed + dt.timedelta(days=7)
    expiring = await _push(clients, "prod-7.0", 70, {
        "security.scan.status": "passed",
        "security.scan.completed-at": completed.isoformat().replace("+00:00", "Z"),
        "security.scan.critical": "0",
    })  # fmt: skip
    fresh = await _push(clients, "prod-7.1", 71, scanned_labels())
    config = reconcile_config(fleet, tmp_path, on_scan_expiry="apply", scan_expiry_coalesce_s=1.0)
    # No webhook: ci's push notifications must not replicate anything by themselves.
    replication = dataclasses.replace(
        config.policy.replication,
        webhook=dataclasses.replace(config.policy.replication.webhook, listen=""),
    )
    config = dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, replication=replication)
    )
    assert not config.policy.reconcile.schedule
    async with running_sidecar(config) as running:
        metrics = running.sidecar.telemetry.metrics_registry

        def learned() -> bool:
            return _sample(
                metrics, "reconcile_triggered_total",
                trigger="scan_expiry_start", mode="plan", outcome="ok",
            ) == 1  # fmt: skip

        await _until(learned, "the trigger's first plan never finished")
        assert dt.datetime.now(dt.UTC) < expires, "started too slowly for this test's margin"
        # Before the expiry: both images are planned to prod-eu and prod-us, nothing copied, and
        # the operator sees when the next expiry comes.
        assert _sample(metrics, "reconcile_plan_actions", kind="copy") == 4
        gauge = _sample(metrics, "reconcile_next_scan_expiry_timestamp_seconds")
        assert gauge == expires.timestamp()
        assert await holders(clients, "web/app", fresh) == frozenset()

        def expiry_ran() -> bool:
            return _sample(
                metrics, "reconcile_triggered_total",
                trigger="scan_expiry", mode="apply", outcome="ok",
            ) >= 1  # fmt: skip

        await _until(expiry_ran, "no reconcile ran when the scan expired")
        assert dt.datetime.now(dt.UTC) > expires
        # The applying run decided again after the expiry: the fresh image is copied, the
        # expired one (SCAN_EXPIRED) is not — and its copies are no longer planned.
        assert await holders(clients, "web/app", fresh) == {"prod-eu", "prod-us"}
        assert await holders(clients, "web/app", expiring) == frozenset()
        assert _sample(metrics, "reconcile_plan_actions", kind="copy") == 2
        store = running.sidecar.parts.store if running.sidecar.parts else None
        assert store is not None
        # Recorded on the lease of the end of the expiry's 1 s window: one run per instant.
        due_ns = (int(expires.timestamp()) + 1) * 1_000_000_000
        assert await store.lease_last_run(f"reconcile-expiry:{due_ns}") is not None

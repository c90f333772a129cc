"""When the reconciler runs by itself: a bundle activation, an expiring scan, a legacy rule's schedule.

The five-registry fleet (tests/support/fleet.py) and the default bundle on a managed OPA; every
assertion reads the registries or the job store back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.app.policy import decision_service, policy_runtime
from sidecar.app.reconcile import reconciler
from sidecar.app.replication import replication_parts
from sidecar.config import ReplicationRule, job_store_url
from sidecar.model.decision import Caller, DecideRequest, ImageRef
from sidecar.model.jobs import JobSpec, JobState
from sidecar.oci import RegistryClients
from sidecar.reconcile import RevisionTrigger, TriggerMetrics, settle
from sidecar.replicate.deferred import request_to_json
from sidecar.replicate.redecide import RevisionGuard
from sidecar.replicate.service import job_specs
from sidecar.store import open_job_store
from sidecar.telemetry import Telemetry
from tests.support.fleet import Fleet
from tests.support.images import push_image, push_manifest, scanned_labels
from tests.support.reconcile import holders as where
from tests.support.reconcile import reconcile_config as _config
from tests.support.sidecar import running_sidecar

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]


async def _push(
    clients: RegistryClients,
    repository: str,
    tag: str,
    seed: int,
    *,
    to: tuple[str, ...] = ("ci",),
    labels: dict[str, str] | None = None,
) -> str:
    digests = set()
    for name in to:
        client = clients.get(name)
        image = await push_image(client, repository, seed=seed, labels=labels or scanned_labels())
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, tag)
        digests.add(image.digest)
    (digest,) = digests
    return digest


def _scan_expiring_in(seconds: int) -> tuple[dt.datetime, dict[str, str]]:
    """When a scan expires ``seconds`` from now, and the config labels of that passed scan.

    Completed just under the default bundle's maximum age (7 days) ago.
    """
    completed = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(days=7, seconds=-seconds)
    labels = {
        "security.scan.status": "passed",
        "security.scan.completed-at": completed.isoformat().replace("+00:00", "Z"),
        "security.scan.critical": "0",
    }
    return completed + dt.timedelta(days=7), labels


async def _past(instant: dt.datetime) -> None:
    """Sleep until 1.5 s after ``instant`` (the policy's clock has millisecond precision)."""
    await asyncio.sleep(max(0.0, (instant - dt.datetime.now(dt.UTC)).total_seconds()) + 1.5)


def _spec(digest: str, registry: str, tag: str, revision: str) -> JobSpec:
    pushed = DecideRequest(
        image=ImageRef("ci", "web/app", tag, digest), event="push", caller=Caller("ci-bot")
    )
    return JobSpec(
        source_registry="ci",
        source_repository="web/app",
        digest=digest,
        destination_registry=registry,
        destination_repository="web/app",
        tag=tag,
        priority=50,
        decision_id="decided-long-ago",
        bundle_revision=revision,
        request=request_to_json(pushed),
    )


async def test_queued_and_parked_copies_are_decided_again_on_the_active_revision(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-1.0", 1)
    config = _config(fleet, tmp_path)
    telemetry = Telemetry("redecide-test")
    metrics = CollectorRegistry()
    async with policy_runtime(config) as runtime, replication_parts(config, telemetry) as parts:
        active = runtime.bundle_revision
        assert active
        store = parts.store
        # Queued under an older revision: prod-eu is still a route of web/app:prod-1.0 on the
        # active one, sandbox (a dev registry) is not — one of each waits parked.
        kept, dropped = await store.enqueue(
            [_spec(app, "prod-eu", "prod-1.0", "r-old"), _spec(app, "sandbox", "prod-1.0", "r-old")]
        )
        parked_dropped, parked_kept = await store.enqueue(
            [_spec(app, "sandbox", "prod-1.1", "r-old"), _spec(app, "prod-us", "prod-1.0", "r-old")]
        )
        assert await store.park("sandbox", error="down") == 2  # sandbox: dropped and parked_dropped
        assert await store.park("prod-us", error="down") == 1
        assert (await store.get(parked_kept.job_id)).state is JobState.PARKED
        # The same revision as the active one: no new decision, it runs as queued.
        current = (await store.enqueue([_spec(app, "dev-us", "prod-1.0", active)]))[0]
        decisions = decision_service(config, telemetry, runtime, parts)
        parts.pool.use_redecider(
            RevisionGuard(decisions, store, lambda: active, metrics_registry=metrics)
        )
        await store.unpark("sandbox")
        await store.unpark("prod-us")
        await parts.pool.start()
        try:
            jobs = {
                j.job_id: j
                for j in await settle(
                    store, [kept, dropped, parked_dropped, parked_kept, current], timeout_s=60
                )
            }
            # web/app:prod-1.1 was queued for sandbox only; the active revision routes that tag
            # to prod-eu and prod-us: those jobs are queued by the re-decision, and run.
            added = [
                j for j in await store.list_jobs(limit=100)
                if j.spec.tag == "prod-1.1" and j.job_id != parked_dropped.job_id
            ]  # fmt: skip
            added = await settle(store, added, timeout_s=60)
        finally:
            await parts.pool.stop()
    telemetry.shutdown()
    assert jobs[kept.job_id].state is JobState.SUCCEEDED
    assert jobs[kept.job_id].spec.bundle_revision == active  # re-stamped with its new decision
    assert jobs[kept.job_id].spec.decision_id != "decided-long-ago"
    assert jobs[parked_kept.job_id].state is JobState.SUCCEEDED
    for job_id in (dropped.job_id, parked_dropped.job_id):
        job = jobs[job_id]
        assert (job.state, job.error_code) == (JobState.SKIPPED, "withdrawn")
        assert f"bundle revision {active} no longer routes" in job.error
        assert "queued under revision r-old" in job.error
    # Same revision: copied without asking again (the policy would not route it to dev-us).
    assert jobs[current.job_id].state is JobState.SUCCEEDED
    assert await where(clients, "web/app", app) == {"prod-eu", "prod-us", "dev-us"}
    assert {(j.spec.destination_registry, j.spec.bundle_revision, j.state) for j in added} == {
        ("prod-eu", active, JobState.SUCCEEDED),
        ("prod-us", active, JobState.SUCCEEDED),
    }
    for name in ("prod-eu", "prod-us"):
        held = await clients.get(name).head_manifest("web/app", "prod-1.1")
        assert held is not None and held.digest == app
    counted = metrics.get_sample_value
    # The other re-decisions add routes that already have jobs (prod-1.0): nothing more queued.
    assert counted("policy_sidecar_replication_redecided_routes_added_total", {}) == 2
    redecided = "policy_sidecar_replication_jobs_redecided_total"
    assert counted(redecided, {"trigger": "revision", "outcome": "kept"}) == 2
    assert counted(redecided, {"trigger": "revision", "outcome": "withdrawn"}) == 2


async def test_a_copy_parked_while_its_scan_expired_is_withdrawn_before_it_runs(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # Allowed now, expired a few seconds on.
    expires, labels = _scan_expiring_in(6)
    expiring = await _push(clients, "web/app", "prod-6.0", 60, labels=labels)
    fresh = await _push(clients, "web/app", "prod-6.1", 61)  # scanned an hour ago
    config = _config(fleet, tmp_path)
    telemetry = Telemetry("redecide-age-test")
    metrics = CollectorRegistry()
    async with policy_runtime(config) as runtime, replication_parts(config, telemetry) as parts:
        store, decisions = parts.store, decision_service(config, telemetry, runtime, parts)
        queued = []
        for digest, tag in ((expiring, "prod-6.0"), (fresh, "prod-6.1")):
            request = DecideRequest(
                image=ImageRef("ci", "web/app", tag, digest), event="push", caller=Caller("ci")
            )
            result = await decisions.decide(request)
            assert result.decision.allow, result.decision  # both scans are valid when decided
            specs = [s for s in job_specs(result, request.image, request=request)
                     if s.destination_registry == "prod-eu"]  # fmt: skip
            queued += await store.enqueue(specs)
        # prod-eu goes down before the copies run; it is back after the scan expired.
        assert await store.park("prod-eu", error="down") == 2
        await _past(expires)
        assert await store.unpark("prod-eu") == 2
        # Same revision throughout: only the decision's age makes the worker ask again.
        guard = RevisionGuard(
            decisions, store, lambda: runtime.bundle_revision, max_age_s=1,
            metrics_registry=metrics,
        )  # fmt: skip
        parts.pool.use_redecider(guard)
        await parts.pool.start()
        try:
            jobs = {j.spec.digest: j for j in await settle(store, queued, timeout_s=60)}
        finally:
            await parts.pool.stop()
    telemetry.shutdown()
    withdrawn = jobs[expiring]
    assert (withdrawn.state, withdrawn.error_code) == (JobState.SKIPPED, "withdrawn"), withdrawn
    assert "no longer routes ci/web/app" in withdrawn.error and "(denied;" in withdrawn.error
    assert "decided again as its decision was" in withdrawn.error
    kept = jobs[fresh]
    assert kept.state is JobState.SUCCEEDED, kept
    assert kept.decided_at > kept.created_at  # re-stamped by its new decision
    assert await where(clients, "web/app", expiring) == frozenset()
    assert "prod-eu" in await where(clients, "web/app", fresh)
    redecided = "policy_sidecar_replication_jobs_redecided_total"
    assert metrics.get_sample_value(redecided, {"trigger": "age", "outcome": "kept"}) == 1
    assert metrics.get_sample_value(redecided, {"trigger": "age", "outcome": "withdrawn"}) == 1


async def test_a_revision_activation_reconciles_once_per_revision_across_replicas(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-2.0", 2)
    config = _config(fleet, tmp_path, on_revision="apply")
    telemetry = Telemetry("trigger-test")
    metrics = CollectorRegistry()
    url = job_store_url(config.policy.replication, str(tmp_path / "state"))
    mine, other = await open_job_store(url), await open_job_store(url)
    try:
        async with reconciler(config, telemetry, run_workers=True) as rec:

            async def run(dry_run: bool, since: str) -> object:
                return await rec.run(dry_run=dry_run, since=since)

            def trigger(store: object, owner: str, mode: str) -> RevisionTrigger:
                return RevisionTrigger(
                    run, store, mode=mode, owner=owner, lease_s=30,  # type: ignore[arg-type]
                    metrics=TriggerMetrics(CollectorRegistry()) if owner != "one" else
                    TriggerMetrics(metrics),
                )  # fmt: skip

            first = trigger(mine, "one", "apply")
            # The first revision a replica sees is no activation: nothing runs.
            await first.activated("", "r-1")
            assert await where(clients, "web/app", app) == frozenset()
            await first.activated("r-1", "r-2")
            await asyncio.wait_for(first.idle(), timeout=120)
            assert await where(clients, "web/app", app) == {"prod-eu", "prod-us"}
            # Another replica seeing the same activation later finds it done.
            assert not await trigger(other, "two", "apply").run_for("r-2")
            assert (
                metrics.get_sample_value(
                    "policy_sidecar_reconcile_triggered_total",
                    {"trigger": "revision", "mode": "apply", "outcome": "ok"},
                )
                == 1
            )
    finally:
        await mine.close()
        await other.close()
    telemetry.shutdown()


async def test_a_plan_only_activation_logs_the_plan_and_copies_nothing(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-3.0", 3)
    config = _config(fleet, tmp_path)
    assert config.policy.reconcile.on_revision == "plan"  # the default
    telemetry = Telemetry("trigger-test")
    async with reconciler(config, telemetry, run_workers=True) as rec:

        async def run(dry_run: bool, since: str) -> object:
            return await rec.run(dry_run=dry_run, since=since)

        url = job_store_url(config.policy.replication, str(tmp_path / "state"))
        store = await open_job_store(url)
        try:
            trigger = RevisionTrigger(
                run, store, mode="plan", owner="one", lease_s=30,
                metrics=TriggerMetrics(CollectorRegistry()),
            )  # fmt: skip
            assert await trigger.run_for("r-9")
        finally:
            await store.close()
    plan_gauge = telemetry.metrics_registry.get_sample_value(
        "policy_sidecar_reconcile_plan_actions", {"kind": "copy"}
    )
    telemetry.shutdown()
    assert plan_gauge == 2  # the drift the new revision leaves: two copies to make
    assert await where(clients, "web/app", app) == frozenset()


async def test_after_a_scan_expires_the_plan_copies_it_nowhere_and_removes_nothing(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # It expires during the test.
    expires, labels = _scan_expiring_in(20)
    # Already copied to prod-eu; prod-us still lacks it.
    app = await _push(clients, "web/app", "prod-4.0", 4, to=("ci", "prod-eu"), labels=labels)
    config = _config(fleet, tmp_path)
    async with reconciler(config, Telemetry("scan-test")) as rec:
        before = await rec.plan()
        mine = [a for a in before.actions if a.digest == app]
        assert {(a.kind, a.registry) for a in mine} == {("copy", "prod-us"), ("keep", "prod-eu")}
        await _past(expires)
        after = await rec.plan()
    mine = [a for a in after.actions if a.digest == app]
    # SCAN_EXPIRED blocks the whole decision: no copy, no keep — and SCAN_* never removes.
    assert mine == []
    assert after.images == before.images
    assert await where(clients, "web/app", app) == {"prod-eu"}


async def test_a_legacy_rule_schedule_reconciles_only_its_source_repositories(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-5.0", 5)
    tool = await _push(clients, "tools/cli", "dev-5", 6)
    config = _config(fleet, tmp_path, scheduled_apply=True)
    rule = ReplicationRule(
        source_repository="web/*", destination_registry="prod-us", source_registry="ci",
        schedule="* * * * *",
    )  # fmt: skip
    legacy = dataclasses.replace(config.policy.legacy, rules=(rule,))
    # No webhook: ci's push notifications must not replicate what the rule's scope leaves out.
    replication = config.policy.replication
    replication = dataclasses.replace(
        replication, webhook=dataclasses.replace(replication.webhook, listen="")
    )
    config = dataclasses.replace(
        config,
        policy=dataclasses.replace(config.policy, legacy=legacy, replication=replication),
    )
    async with running_sidecar(config) as running:
        # Every minute: the run missed "this minute" happens at start.
        store = running.sidecar.parts.store if running.sidecar.parts else None
        assert store is not None
        deadline = asyncio.get_running_loop().time() + 90
        # The run is recorded on the rule's own lease once it finished.
        while await store.lease_last_run("reconcile-rule:legacy-0") is None:
            assert asyncio.get_running_loop().time() < deadline, "the rule's schedule never ran"
            await asyncio.sleep(0.5)
        assert await where(clients, "web/app", app) == {"prod-eu", "prod-us"}
        metrics = running.sidecar.telemetry.metrics_registry
        ran = metrics.get_sample_value(
            "policy_sidecar_reconcile_triggered_total",
            {"trigger": "rule_schedule", "mode": "apply", "outcome": "ok"},
        )
        assert ran is not None and ran >= 1
    # tools/cli is outside the rule's source repositories: nobody reconciled it.
    assert await where(clients, "tools/cli", tool) == frozenset()

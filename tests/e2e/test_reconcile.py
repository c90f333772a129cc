"""The reconciler on real registries and a real OPA: observe → decide → plan → apply.

Five CNCF Distribution registries (tests/support/fleet.py, deletes enabled) and the default
bundle on a managed OPA. Images are pushed to ``ci`` with no sidecar running — as if they were
there before any rule — and every assertion reads the registries back by digest.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import sqlite3
import sys
from pathlib import Path

import pytest
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar.app.policy import decision_service, policy_runtime
from sidecar.app.reconcile import reconciler
from sidecar.app.replication import replication_parts
from sidecar.audit import open_audit_log
from sidecar.cli import main
from sidecar.config import job_store_url
from sidecar.errors import ReconcileBusy
from sidecar.model.decision import DecideRequest, ImageRef, TenantUsage
from sidecar.oci import RegistryClients
from sidecar.reconcile import APPLY_LEASE, Reconciler
from sidecar.reconcile.plan import BLOCKED_FOREIGN
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
    **labels: str,
) -> str:
    """Push one image to each of ``to`` (same bytes, so the same digest) and tag it ``tag``."""
    scanned = scanned_labels(**labels)
    digests = set()
    for name in to:
        client = clients.get(name)
        image = await push_image(client, repository, seed=seed, labels=scanned)
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, tag)
        digests.add(image.digest)
    (digest,) = digests
    return digest


async def test_images_pushed_before_any_rule_are_backfilled_where_decisions_route_them(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-1.0", 1)
    tool = await _push(clients, "tools/cli", "dev-2", 2)
    misc = await _push(clients, "misc/thing", "1.0", 3)
    config = _config(fleet, tmp_path)
    telemetry = Telemetry("reconcile-test")
    async with reconciler(config, telemetry, run_workers=True) as rec:
        assert isinstance(rec, Reconciler)
        plan = await rec.plan()
        copies = {(a.registry, a.repository, a.tag, a.digest) for a in plan.of("copy")}
        assert copies == {
            ("prod-eu", "web/app", "prod-1.0", app),
            ("prod-us", "web/app", "prod-1.0", app),
            ("dev-us", "tools/cli", "dev-2", tool),
            ("sandbox", "misc/thing", "1.0", misc),
        }
        assert plan.images == 3 and plan.bytes_to_copy > 4 * (96 << 10)
        # Planning alone changed nothing.
        assert await where(clients, "web/app", app) == frozenset()

        plan, report = await rec.run(dry_run=False)
        assert report is not None
        assert sorted(j.state.value for j in report.jobs) == ["succeeded"] * 4
        assert await where(clients, "web/app", app) == {"prod-eu", "prod-us"}
        assert await where(clients, "tools/cli", tool) == {"dev-us"}
        assert await where(clients, "misc/thing", misc) == {"sandbox"}
        held = await clients.get("prod-us").head_manifest("web/app", "prod-1.0")
        assert held is not None and held.digest == app

        # Converged: a second pass has nothing to copy and keeps the four copies.
        again = await rec.plan()
        assert again.counts()["copy"] == 0 and again.counts()["keep"] == 4
    metrics = telemetry.metrics_registry
    telemetry.shutdown()
    # Drift by kind, from the last plan; the last clean applying run.
    gauge = "policy_sidecar_reconcile_plan_actions"
    assert metrics.get_sample_value(gauge, {"kind": "copy"}) == 0
    assert metrics.get_sample_value(gauge, {"kind": "keep"}) == 4
    last = metrics.get_sample_value(
        "policy_sidecar_reconcile_last_success_timestamp_seconds", {"mode": "apply"}
    )
    assert last is not None and last > 0


async def test_compliance_required_copy_outside_gdpr_is_removed_and_gdpr_copies_kept(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # A legacy rule since removed from the bundle had copied it to the non-GDPR prod-us too.
    billing = await _push(
        clients, "eu/billing", "prod-7", 7,
        to=("ci", "prod-us", "prod-eu"), **{"compliance-required": "true"},
    )  # fmt: skip
    assert await where(clients, "eu/billing", billing) == {"prod-us", "prod-eu"}
    telemetry = Telemetry("reconcile-test")
    async with reconciler(_config(fleet, tmp_path), telemetry, run_workers=True) as rec:
        plan = await rec.plan()
        removes = plan.of("remove")
        assert [(a.registry, a.reasons, a.blocked) for a in removes] == [
            ("prod-us", ("NOT_GDPR",), "")
        ]
        assert [a.registry for a in plan.of("keep")] == ["prod-eu"]
        assert plan.bytes_freed == removes[0].size_bytes > 0

        _, report = await rec.run(dry_run=False)
        assert report is not None and [a.registry for a in report.removed] == ["prod-us"]
    metrics = telemetry.metrics_registry
    telemetry.shutdown()
    assert await where(clients, "eu/billing", billing) == {"prod-eu"}
    # Every removal is a metric and an audit event naming the decision and its revision.
    labels = {"kind": "remove", "reason": "NOT_GDPR"}
    assert metrics.get_sample_value("policy_sidecar_reconcile_removals_total", labels) == 1
    log = await open_audit_log(job_store_url(_config(fleet, tmp_path).policy.replication,
                                             str(tmp_path / "state")))  # fmt: skip
    try:
        [record] = [r for r in await log.list() if r.event.action == "Reconcile"]
    finally:
        await log.close()
    assert (record.event.outcome, record.event.actor, record.event.digest) == (
        "removed", "reconciler", billing,
    )  # fmt: skip
    executed = report.removed[0]  # the applying run planned again: its own decision
    assert f"decision_id={executed.decision_id}" in record.event.detail
    assert record.event.new_revision == executed.bundle_revision != ""
    source = await clients.get("ci").head_manifest("eu/billing", "prod-7")
    assert source is not None and source.digest == billing  # the source is never touched


async def test_cli_dry_run_prints_the_plan_and_changes_nothing(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await _push(clients, "web/app", "prod-2.0", 11)
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    doc["policy"]["reconcile"] = {"sources": ["ci"]}
    doc["policy"]["state_dir"] = str(tmp_path / "cli-state")
    doc["policy"]["bundle"] = {"output": str(tmp_path / "cli-state" / "bundle.tar.gz")}
    path = tmp_path / "reconcile.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")

    # main() runs its own event loop: in a thread, beside this test's.
    assert (
        await asyncio.to_thread(main, ["--config", str(path), "reconcile", "--json", "--quiet"])
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["dry_run"] is True
    planned = {(a["kind"], a["registry"]) for a in out["plan"]["actions"]}
    assert planned == {("copy", "prod-eu"), ("copy", "prod-us")}
    assert out["plan"]["counts"]["copy"] == 2
    assert await where(clients, "web/app", app) == frozenset()

    assert await asyncio.to_thread(main, ["--config", str(path), "reconcile"]) == 0
    captured = capsys.readouterr()
    assert "copy  prod-eu/web/app:prod-2.0" in captured.out
    assert "1 image(s): copy 2" in captured.out
    assert "reconcile: decide: 1/1" in captured.err
    assert await where(clients, "web/app", app) == frozenset()


async def test_batched_decisions_are_the_decisions_one_query_each_would_give(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    tags = [("web/app", "prod-1", 21), ("tools/cli", "dev-1", 22), ("misc/x", "1.0", 23)]
    pushed = [(r, t, await _push(clients, r, t, s)) for r, t, s in tags]
    config = _config(fleet, tmp_path)
    telemetry = Telemetry("reconcile-test")
    requests = [
        DecideRequest(
            image=ImageRef("ci", repository, tag, digest),
            event="reconcile",
            present_at=("prod-us",) if tag == "prod-1" else (),
        )
        for repository, tag, digest in pushed
    ]
    async with (
        policy_runtime(config) as runtime,
        replication_parts(config, telemetry) as parts,
    ):
        batched_service = decision_service(config, telemetry, runtime, parts)
        assert runtime.opa is not None
        batched = await batched_service.decide_batch(requests)
        single = [await batched_service.decide(r) for r in requests]
    telemetry.shutdown()
    assert [b.decision for b in batched] == [s.decision for s in single]
    assert [b.degraded for b in batched] == [False] * 3
    assert len({b.decision_id for b in batched}) == 3
    assert batched[0].input is not None and batched[0].input.image.present_at == ("prod-us",)
    assert {r.registry for r in batched[0].decision.routes} == {"prod-us", "prod-eu"}


async def test_reconcile_rpc_streams_the_plan_then_its_execution(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-3.0", 31)
    async with running_sidecar(_config(fleet, tmp_path)) as running:
        events = [e async for e in running.stub.Reconcile(pb.ReconcileRequest())]
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds == ["planned", "planned", "summary", "done"]
        assert {(e.planned.kind, e.planned.registry) for e in events[:2]} == {
            ("copy", "prod-eu"),
            ("copy", "prod-us"),
        }
        assert events[2].summary.counts["copy"] == 2 and events[2].summary.images == 1
        assert events[3].done == "dry run: nothing changed"
        assert await where(clients, "web/app", app) == frozenset()

        applied = [e async for e in running.stub.Reconcile(pb.ReconcileRequest(dry_run=False))]
        jobs = [e.job for e in applied if e.WhichOneof("event") == "job"]
        assert sorted(j.state for j in jobs) == ["succeeded", "succeeded"]
        assert applied[-1].done == "applied"
    assert await where(clients, "web/app", app) == {"prod-eu", "prod-us"}


async def test_a_tenant_over_its_limit_is_cleaned_oldest_first_and_never_in_the_source(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # Three acme images copied to dev-us long ago; none is routed any more (prod tags without a
    # scan), each ~99 kB against a 150 kB limit: retention keeps the newest per repository.
    pushed = {}
    for n, month in ((1, "01"), (2, "02"), (3, "03")):
        pushed[n] = await _push_created(
            clients, "acme/app", f"prod-{n}", 40 + n, f"2026-{month}-01T00:00:00Z"
        )
    data = tmp_path / "acme-data" / "replication" / "tenants"
    data.mkdir(parents=True)
    (data / "data.json").write_text(
        json.dumps({"acme": {"retention": {"keep_last": 1, "older_than_days": 1}}}),
        encoding="utf-8",
    )
    config = _config(fleet, tmp_path)
    policy = config.policy
    config = dataclasses.replace(
        config,
        policy=dataclasses.replace(
            policy,
            tenancy=dataclasses.replace(
                policy.tenancy,
                tenants=("acme",),
                usage={"acme": TenantUsage("acme", 0, 150_000)},
            ),
            bundle=dataclasses.replace(policy.bundle, data_dirs=(str(tmp_path / "acme-data"),)),
        ),
    )
    telemetry = Telemetry("reconcile-test")
    async with reconciler(config, telemetry, run_workers=True) as rec:
        plan = await rec.plan()
        cleanups = plan.of("cleanup")
        assert [(a.registry, a.tag, a.reasons) for a in cleanups] == [
            ("dev-us", "prod-1", ("QUOTA_EXCEEDED",)),
            ("dev-us", "prod-2", ("QUOTA_EXCEEDED",)),
        ]
        assert plan.of("copy") == () and plan.of("remove") == ()
        _, report = await rec.run(dry_run=False)
        assert report is not None and len(report.removed) == 2
    telemetry.shutdown()
    assert await where(clients, "acme/app", pushed[1]) == frozenset()
    assert await where(clients, "acme/app", pushed[2]) == frozenset()
    assert await where(clients, "acme/app", pushed[3]) == {"dev-us"}
    for n in (1, 2, 3):  # the source keeps every original
        held = await clients.get("ci").head_manifest("acme/app", f"prod-{n}")
        assert held is not None and held.digest == pushed[n]


async def test_tenant_usage_is_measured_from_the_registries_and_drives_its_decisions(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # The configuration says acme uses nothing; dev-us holds three of its images (~99 kB each,
    # one of them under two tags) against a 150 kB limit. The decisions must see the measured
    # bytes — each registry's copy of a digest once — and ask for acme's cleanup themselves.
    pushed = {}
    for n, month in ((1, "01"), (2, "02"), (3, "03")):
        pushed[n] = await _push_created(
            clients, "acme/app", f"prod-{n}", 50 + n, f"2026-{month}-01T00:00:00Z"
        )
    dev_us = clients.get("dev-us")
    third = await dev_us.get_manifest("acme/app", pushed[3])
    await push_manifest(dev_us, "acme/app", third.json, "latest")
    measured = 0
    for digest in pushed.values():
        manifest = await dev_us.get_manifest("acme/app", digest)
        config = manifest.config()
        referenced = (*manifest.layers(), *((config,) if config else ()))
        measured += len(manifest.data) + sum(int(d.size) for d in referenced)
    assert 150_000 < measured < 450_000
    data = tmp_path / "acme-data" / "replication" / "tenants"
    data.mkdir(parents=True)
    (data / "data.json").write_text(
        json.dumps({"acme": {"retention": {"keep_last": 1, "older_than_days": 1}}}),
        encoding="utf-8",
    )
    config = _config(fleet, tmp_path)
    policy = config.policy
    config = dataclasses.replace(
        config,
        policy=dataclasses.replace(
            policy,
            tenancy=dataclasses.replace(
                policy.tenancy,
                tenants=("acme",),
                usage={"acme": TenantUsage("acme", 0, 150_000)},
            ),
            bundle=dataclasses.replace(policy.bundle, data_dirs=(str(tmp_path / "acme-data"),)),
        ),
    )
    async with running_sidecar(config) as running:
        events = [e async for e in running.stub.Reconcile(pb.ReconcileRequest())]
        cleanups = [
            e.planned
            for e in events
            if e.WhichOneof("event") == "planned" and e.planned.kind == "cleanup"
        ]
        assert [(c.registry, c.tag) for c in cleanups] == [
            ("dev-us", "prod-1"),
            ("dev-us", "prod-2"),
        ]
        for cleanup in cleanups:
            explained = await running.stub.Explain(
                pb.ExplainRequest(decision_id=cleanup.decision_id)
            )
            tenant = json.loads(explained.input_json)["tenant"]
            assert tenant == {
                "id": "acme",
                "storage_used_bytes": measured,
                "storage_limit_bytes": 150_000,
            }
            assert [(a.type, a.tenant) for a in explained.decision.actions] == [("cleanup", "acme")]
            assert "QUOTA_EXCEEDED" in [r.code for r in explained.decision.reasons]
        assert events[-1].done == "dry run: nothing changed"
    for n in (1, 2, 3):  # a dry run: every copy is still there
        assert await where(clients, "acme/app", pushed[n]) == {"dev-us"}


async def _push_created(
    clients: RegistryClients, repository: str, tag: str, seed: int, created: str
) -> str:
    """Push an unscanned acme image made at ``created`` to ci and dev-us (a legacy copy)."""
    digests = set()
    for name in ("ci", "dev-us"):
        client = clients.get(name)
        image = await push_image(
            client, repository, seed=seed, labels={"tenant": "acme"}, created=created
        )
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, tag)
        digests.add(image.digest)
    (digest,) = digests
    return digest


async def test_a_scheduled_reconcile_backfills_without_anyone_asking(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-4.0", 51)
    # Every minute, applying: the run missed "this minute" happens at start.
    config = _config(fleet, tmp_path, schedule="* * * * *", scheduled_apply=True)
    async with running_sidecar(config):
        deadline = asyncio.get_running_loop().time() + 60
        while await where(clients, "web/app", app) != {"prod-eu", "prod-us"}:
            assert asyncio.get_running_loop().time() < deadline, "the schedule never ran"
            await asyncio.sleep(0.5)


async def test_an_applying_run_waits_for_no_one_another_holding_the_lease_refuses_it(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    app = await _push(clients, "web/app", "prod-5.0", 61)
    config = _config(fleet, tmp_path)
    other = await open_job_store(job_store_url(config.policy.replication, str(tmp_path / "state")))
    telemetry = Telemetry("reconcile-test")
    try:
        # Another replica (or a CLI) is applying a plan right now.
        assert await other.acquire_lease(APPLY_LEASE, "other-replica", ttl_s=600)
        async with reconciler(config, telemetry, run_workers=True) as rec:
            with pytest.raises(ReconcileBusy, match="another reconcile is applying"):
                await rec.run(dry_run=False)
            plan, _ = await rec.run()  # a dry run needs no lease
            assert plan.counts()["copy"] == 2
            assert await where(clients, "web/app", app) == frozenset()
            await other.release_lease(APPLY_LEASE, "other-replica")
            _, report = await rec.run(dry_run=False)
            assert report is not None and len(report.jobs) == 2
    finally:
        await other.close()
        telemetry.shutdown()
    assert await where(clients, "web/app", app) == {"prod-eu", "prod-us"}


async def test_a_reconcile_killed_while_applying_converges_when_run_again(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    apps = [await _push(clients, f"web/app{n}", "prod-1", 70 + n) for n in range(4)]
    billing = await _push(
        clients, "eu/billing", "prod-8", 80,
        to=("ci", "prod-us", "prod-eu"), **{"compliance-required": "true"},
    )  # fmt: skip
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    state = tmp_path / "crash-state"
    doc["policy"]["reconcile"] = {"sources": ["ci"], "lease_s": 2}
    doc["policy"]["state_dir"] = str(state)
    doc["policy"]["bundle"] = {"output": str(state / "bundle.tar.gz")}
    path = tmp_path / "crash.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    command = [sys.executable, "-m", "sidecar", "--config", str(path), "reconcile", "--apply"]
    first = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    # SIGKILL as soon as the first job is durable: copies (and maybe the delete) in flight.
    deadline = asyncio.get_running_loop().time() + 120
    while not _jobs_recorded(state / "jobs.db"):
        assert first.returncode is None, "the run ended before any job was recorded"
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    first.kill()
    await first.wait()
    # The killed run's lease is not renewed any more: free once lease_s has passed.
    await asyncio.sleep(2.5)

    again = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    assert await again.wait() == 0
    for digest, n in zip(apps, range(4), strict=True):
        assert await where(clients, f"web/app{n}", digest) == {"prod-eu", "prod-us"}
    assert await where(clients, "eu/billing", billing) == {"prod-eu"}
    held = await clients.get("ci").head_manifest("eu/billing", "prod-8")
    assert held is not None and held.digest == billing
    # Nothing removed twice, nothing the plan did not list: one delete job, for prod-us only.
    deletes = _delete_jobs(state / "jobs.db")
    assert deletes == [("prod-us", "eu/billing", "prod-8", billing, "succeeded")]


def _jobs_recorded(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return bool(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])
    except sqlite3.Error:
        return False  # created but not yet migrated


def _delete_jobs(db: Path) -> list[tuple[str, ...]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute(
            "SELECT destination_registry, destination_repository, tag, digest, state FROM jobs "
            "WHERE kind = 'delete'"
        ).fetchall()
    return [tuple(str(c) for c in row) for row in rows]


async def test_a_retag_moves_only_the_tags_the_sidecar_wrote_never_someone_elses(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    old = await _push(clients, "web/app", "prod-1.0", 21)
    config = _config(fleet, tmp_path)
    telemetry = Telemetry("reconcile-retag")
    async with reconciler(config, telemetry, run_workers=True) as rec:
        await rec.run(dry_run=False)  # the sidecar writes `old` to prod-eu and prod-us
        assert await where(clients, "web/app", old) == {"prod-eu", "prod-us"}
        # The source tag moves on; a second image's tag already holds someone else's push in
        # prod-us (a team pushed there by hand), and nothing in prod-eu.
        new = await _push(clients, "web/app", "prod-1.0", 22)
        theirs = await _push(clients, "web/app", "prod-3.0", 23, to=("prod-us",))
        ours = await _push(clients, "web/app", "prod-3.0", 24)

        plan = await rec.plan()
        retags = {(a.registry, a.tag, a.blocked) for a in plan.of("retag")}
        assert retags == {
            ("prod-eu", "prod-1.0", ""),
            ("prod-us", "prod-1.0", ""),
            ("prod-us", "prod-3.0", BLOCKED_FOREIGN),
        }
        assert {(a.registry, a.tag) for a in plan.of("copy")} == {("prod-eu", "prod-3.0")}

        _, report = await rec.run(dry_run=False)
        assert report is not None
        assert sorted(j.state.value for j in report.jobs) == ["succeeded"] * 3
    telemetry.shutdown()
    for name in ("prod-eu", "prod-us"):
        moved = await clients.get(name).head_manifest("web/app", "prod-1.0")
        assert moved is not None and moved.digest == new
    kept = await clients.get("prod-us").head_manifest("web/app", "prod-3.0")
    assert kept is not None and kept.digest == theirs  # never overwritten
    copied = await clients.get("prod-eu").head_manifest("web/app", "prod-3.0")
    assert copied is not None and copied.digest == ours


async def test_batches_in_flight_together_plan_what_one_batch_at_a_time_plans(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # Routed (prod-*), held back (dev-*) and unmatched images, one per batch, four batches at once.
    tags = [("web/app", "prod-1", 31), ("tools/cli", "dev-1", 32), ("misc/x", "1.0", 33)]
    tags += [(f"team{n}/app", f"prod-{n}", 40 + n) for n in range(5)]
    for repository, tag, seed in tags:
        await _push(clients, repository, tag, seed)

    async def planned(**settings: int) -> list[dict[str, object]]:
        config = _config(fleet, tmp_path / str(settings), **settings)
        telemetry = Telemetry("reconcile-test")
        async with reconciler(config, telemetry) as rec:
            plan = await rec.plan()
        telemetry.shutdown()
        assert plan.images == len(tags) and plan.degraded == 0
        # Decision ids and the bundle's build time differ between runs; nothing else may.
        return [
            {k: v for k, v in a.to_json().items() if k not in ("decision_id", "bundle_revision")}
            for a in plan.actions
        ]

    together = await planned(batch_size=1, batch_concurrency=4)
    one_at_a_time = await planned(batch_size=200, batch_concurrency=1)
    assert together == one_at_a_time
    prod = [a for a in together if a["kind"] == "copy" and str(a["tag"]).startswith("prod-")]
    assert len(prod) == 2 * 6  # six prod images, each to prod-eu and prod-us

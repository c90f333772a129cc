"""A tenant admin changes only its own tenant's rules; everything else stays with policy admins.

A tenant-scoped publish is a bundle whose only difference from the active revision lies under
data.replication.tenants.<its tenant>. The sidecar computes that difference, and data.system.authz
(the real OPA) decides on it; decisions show which revision serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes, write_data
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

TENANT_ADMIN = bearer("tenant-admin-secret")
POLICY_ADMIN = bearer("policy-admin-secret")
ACME_RETENTION = {"keep_last": 3, "older_than_days": 5}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = admin_config(tmp_path_factory.mktemp("admin-tenant"))
    async with running_sidecar(config) as running:
        yield running


def _bundle(sidecar: RunningSidecar, work: Path, name: str, **data: object) -> bytes:
    """Build the sidecar's bundle with ``data`` overlays ({data path: value})."""
    overlay = work / f"overlay-{name}"
    for path, value in data.items():
        write_data(overlay, path.replace(".", "/"), value)
    return build_bundle_bytes(sidecar.sidecar.config, work / f"{name}.tar.gz", name,
                              overlays=(overlay,))  # fmt: skip


async def _decided_revision(sidecar: RunningSidecar) -> str:
    image = pb.Image(registry="ci", repository="acme/app", tag="dev-1", labels={"tenant": "acme"})
    return (await sidecar.stub.Decide(pb.DecideRequest(image=image))).bundle_revision


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    return refused.value


async def test_tenant_admin_publishes_its_tenant_and_nothing_else(
    sidecar: RunningSidecar, tmp_path: Path
) -> None:
    stub = admin_stub(sidecar.channel)
    startup = await _decided_revision(sidecar)
    acme = {"acme": {"retention": ACME_RETENTION}}

    published = await stub.PublishBundle(
        pb.PublishBundleRequest(bundle=_bundle(sidecar, tmp_path, "acme-1", **{
            "replication.tenants": acme})),
        metadata=TENANT_ADMIN,
    )  # fmt: skip
    assert (published.revision, published.previous_revision) == ("acme-1", startup)
    assert list(published.tenants) == ["acme"]
    assert list(published.changed_files) == ["data.json", "data:replication.tenants.acme"]
    assert await _decided_revision(sidecar) == "acme-1"

    # Another tenant's rules, and acme's plus a global setting: both are out of scope.
    globex = _bundle(sidecar, tmp_path, "globex", **{
        "replication.tenants": {**acme, "globex": {"retention": ACME_RETENTION}}})  # fmt: skip
    denied = await _refused(
        stub.PublishBundle(pb.PublishBundleRequest(bundle=globex), metadata=TENANT_ADMIN)
    )
    assert "for tenant globex" in (denied.details() or "")
    mixed = _bundle(sidecar, tmp_path, "mixed", **{
        "replication.tenants": {"acme": {"retention": {"keep_last": 1, "older_than_days": 1}}},
        "replication.settings": {"cost": {"threshold": 1.0}}})  # fmt: skip
    denied = await _refused(
        stub.PublishBundle(pb.PublishBundleRequest(bundle=mixed), metadata=TENANT_ADMIN)
    )
    assert "with global scope" in (denied.details() or "")
    await _refused(stub.Rollback(pb.RollbackRequest(revision=startup), metadata=TENANT_ADMIN))
    assert await _decided_revision(sidecar) == "acme-1"  # nothing refused changed anything

    # A policy admin may publish the mixed bundle, and roll everything back.
    await stub.PublishBundle(pb.PublishBundleRequest(bundle=mixed), metadata=POLICY_ADMIN)
    assert await _decided_revision(sidecar) == "mixed"
    rolled = await stub.Rollback(pb.RollbackRequest(revision=startup), metadata=POLICY_ADMIN)
    assert (rolled.revision, rolled.previous_revision) == (startup, "mixed")
    assert await _decided_revision(sidecar) == startup

    log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=6), metadata=POLICY_ADMIN)
    summary = [(e.actor, e.action, e.outcome, e.new_revision) for e in log.events]
    assert summary == [
        ("token:policy-admin", "Rollback", "rolled_back", startup),
        ("token:policy-admin", "PublishBundle", "published", "mixed"),
        ("token:tenant-admin", "Rollback", "denied", startup),
        ("token:tenant-admin", "PublishBundle", "denied", "mixed"),
        ("token:tenant-admin", "PublishBundle", "denied", "globex"),
        ("token:tenant-admin", "PublishBundle", "published", "acme-1"),
    ]
    assert log.events[0].old_revision == "mixed"
    assert list(log.events[5].tenants) == ["acme"]


async def test_tenant_admin_sees_only_its_tenants_history(sidecar: RunningSidecar) -> None:
    stub = admin_stub(sidecar.channel)
    revisions = await stub.ListRevisions(
        pb.ListRevisionsRequest(tenant="acme"), metadata=TENANT_ADMIN
    )
    assert all("acme" in r.tenants for r in revisions.revisions)
    log = await stub.GetAuditLog(pb.GetAuditLogRequest(tenant="acme"), metadata=TENANT_ADMIN)
    assert log.events and all("acme" in e.tenants for e in log.events)
    await _refused(stub.GetAuditLog(pb.GetAuditLogRequest(), metadata=TENANT_ADMIN))


async def test_tenant_admin_cannot_route_images_into_another_tenants_namespace(
    sidecar: RunningSidecar, tmp_path: Path
) -> None:
    """Issue 15: a tenant rule's destination_repository stays inside the tenant's prefixes."""
    stub = admin_stub(sidecar.channel)
    serving = await _decided_revision(sidecar)

    def steal(name: str, destination: str) -> bytes:
        rule = {"id": "acme-steal", "match": {"repository": "acme/*"},
                "set": {"destination_repository": destination}}  # fmt: skip
        return _bundle(sidecar, tmp_path, name, **{
            "replication.tenants": {"acme": {"rules": [rule]}}})  # fmt: skip

    into_globex = steal("steal-globex", "globex/{repository}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PublishBundle(pb.PublishBundleRequest(bundle=into_globex), metadata=TENANT_ADMIN)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert (
        "tenancy: data.json:replication.tenants.acme.rules.0.set.destination_repository: "
        "rule 'acme-steal' of tenant 'acme' sets destination_repository 'globex/{repository}'"
    ) in details, details
    assert "'globex/' of tenant 'globex'" in details
    assert "'acme-mirror/', 'acme/', 'low/'" in details  # the allowed prefixes
    assert await _decided_revision(sidecar) == serving  # the previous revision keeps serving

    # ValidateBundle runs the same check: a bare template may resolve anywhere.
    anywhere = steal("steal-anywhere", "{repository}")
    report = await stub.ValidateBundle(
        pb.ValidateBundleRequest(bundle=anywhere), metadata=TENANT_ADMIN
    )
    assert not report.valid
    assert any(
        "'{repository}', which is outside the tenant's repository prefixes" in p
        for p in report.problems
    ), list(report.problems)

    log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=2), metadata=POLICY_ADMIN)
    assert [(e.action, e.outcome) for e in log.events] == [
        ("ValidateBundle", "rejected"),
        ("PublishBundle", "rejected"),
    ]

"""PolicyAdmin RBAC end to end: each role and action, decided by the real OPA's data.system.authz.

A real sidecar (managed OPA on the locally built bundle) with one bearer token per role; role
bindings come from bundle data (data.system.bindings). Every refusal is PERMISSION_DENIED or
UNAUTHENTICATED and leaves an audit record naming the caller.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from tests.support.admin import (
    ROLES,
    admin_config,
    admin_stub,
    bearer,
    build_bundle_bytes,
    write_data,
)
from tests.support.sidecar import RunningSidecar, running_sidecar

# clock: decisions here use the sidecar's wall clock (scan ages, token expiry)
pytestmark = [
    pytest.mark.integration,
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.clock,
]

ACTIONS = ("ListRevisions", "GetAuditLog", "ValidateBundle", "PublishBundle", "Rollback")
# What data/system/roles/data.json grants; the tenant admin asks without a tenant scope here.
ALLOWED = {
    "viewer": {"ListRevisions", "GetAuditLog"},
    "policy-author": {"ListRevisions", "GetAuditLog", "ValidateBundle", "PublishBundle"},
    "policy-admin": set(ACTIONS),
    "tenant-admin": set(),
}
_revisions = itertools.count(1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    state = tmp_path_factory.mktemp("admin-rbac")
    config = admin_config(state, expired=frozenset({"policy-admin-expired"}),
                          tokens={**{r: f"{r}-secret" for r in ROLES},
                                  "policy-admin-expired": "old-secret"})  # fmt: skip
    async with running_sidecar(config) as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def global_bundle(sidecar: RunningSidecar, tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A bundle changing a global setting (scan age), signed with the sidecar's key."""
    work = tmp_path_factory.mktemp("admin-rbac-bundles")
    overlay = write_data(work / "overlay", "replication/settings", {"scan": {"max_age_days": 9}})
    return build_bundle_bytes(sidecar.sidecar.config, work / "g.tar.gz", "g", overlays=(overlay,))


async def _startup_revision(sidecar: RunningSidecar) -> str:
    stub = admin_stub(sidecar.channel)
    listing = await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=bearer("viewer-secret"))
    return next(r.revision for r in listing.revisions if r.published_by == "sidecar:startup")


async def _invoke(sidecar: RunningSidecar, action: str, token: str, bundle: bytes) -> object:
    stub, md = admin_stub(sidecar.channel), bearer(token)
    if action == "ListRevisions":
        return await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=md)
    if action == "GetAuditLog":
        return await stub.GetAuditLog(pb.GetAuditLogRequest(limit=5), metadata=md)
    if action == "ValidateBundle":
        return await stub.ValidateBundle(pb.ValidateBundleRequest(bundle=bundle), metadata=md)
    if action == "PublishBundle":
        request = pb.PublishBundleRequest(bundle=bundle, revision=f"rbac-{next(_revisions)}")
        return await stub.PublishBundle(request, metadata=md)
    revision = await _startup_revision(sidecar)
    return await stub.Rollback(pb.RollbackRequest(revision=revision), metadata=md)


async def _last_event(sidecar: RunningSidecar) -> pb.AuditEvent:
    log = await admin_stub(sidecar.channel).GetAuditLog(
        pb.GetAuditLogRequest(limit=1), metadata=bearer("policy-admin-secret")
    )
    return log.events[0]


@pytest.mark.parametrize(("role", "action"), list(itertools.product(ROLES, ACTIONS)))
async def test_each_role_may_do_exactly_what_its_bindings_grant(
    sidecar: RunningSidecar, global_bundle: bytes, role: str, action: str
) -> None:
    if action in ALLOWED[role]:
        answer = await _invoke(sidecar, action, f"{role}-secret", global_bundle)
        if isinstance(answer, pb.ValidateBundleResponse):
            assert answer.valid, list(answer.problems)
        return
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await _invoke(sidecar, action, f"{role}-secret", global_bundle)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"token:{role}" in (refused.value.details() or "")
    assert action in (refused.value.details() or "")
    event = await _last_event(sidecar)
    assert (event.actor, event.action, event.outcome) == (f"token:{role}", action, "denied")
    assert event.detail == refused.value.details()


async def test_tenant_admin_reads_its_own_tenant(sidecar: RunningSidecar) -> None:
    stub, md = admin_stub(sidecar.channel), bearer("tenant-admin-secret")
    await stub.ListRevisions(pb.ListRevisionsRequest(tenant="acme"), metadata=md)
    log = await stub.GetAuditLog(pb.GetAuditLogRequest(tenant="acme"), metadata=md)
    assert all("acme" in event.tenants for event in log.events)
    with pytest.raises(grpc.aio.AioRpcError) as other:
        await stub.GetAuditLog(pb.GetAuditLogRequest(tenant="globex"), metadata=md)
    assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "for tenant globex" in (other.value.details() or "")


@pytest.mark.parametrize(
    ("metadata", "actor", "problem"),
    [
        (bearer("no-such-token"), "token:unknown-", "unknown bearer token"),
        (bearer("old-secret"), "token:policy-admin-expired", "expired at 2020-01-01T00:00:00Z"),
        ((), "peer:ipv4:127.0.0.1:", "no credentials"),
        ((("authorization", "Basic dXNlcjpwdw=="),), "peer:ipv4:127.0.0.1:", "no credentials"),
    ],
)
async def test_unknown_expired_or_missing_credentials_are_unauthenticated_and_audited(
    sidecar: RunningSidecar, metadata: tuple[tuple[str, str], ...], actor: str, problem: str
) -> None:
    before = (await _last_event(sidecar)).seq
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await admin_stub(sidecar.channel).Rollback(
            pb.RollbackRequest(revision="anything"), metadata=metadata
        )
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert problem in (refused.value.details() or "")
    event = await _last_event(sidecar)
    assert event.seq == before + 1
    assert event.actor.startswith(actor) and (event.action, event.outcome) == (
        "Rollback",
        "unauthenticated",
    )
    assert "secret" not in event.actor  # the token itself is never recorded


async def test_audit_events_are_counted_by_action_and_outcome(sidecar: RunningSidecar) -> None:
    registry = sidecar.sidecar.telemetry.metrics_registry
    labels = {"action": "Rollback", "outcome": "denied"}
    before = registry.get_sample_value("policy_sidecar_audit_events_total", labels)
    with pytest.raises(grpc.aio.AioRpcError):
        await admin_stub(sidecar.channel).Rollback(
            pb.RollbackRequest(revision="x"), metadata=bearer("viewer-secret")
        )
    after = registry.get_sample_value("policy_sidecar_audit_events_total", labels)
    assert before is not None and after == before + 1

"""Issue 15, "Tenant-admin reach": a tenant rule may not route images into another tenant.

The attack: acme's tenant-admin publishes (and validates) a bundle whose only change is an acme
rule with ``destination_repository`` in globex's namespace of a shared registry. Before the fix,
authz saw a change under ``data.replication.tenants.acme`` only and let it through. Now the
bundle validation refuses it, the audit trail records the refusal and the serving revision stays.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from sidecar._proto import policy_pb2 as pb
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes, write_data
from tests.support.security import assert_serving
from tests.support.sidecar import running_sidecar

pytestmark = pytest.mark.integration

TENANT_ADMIN = bearer("tenant-admin-secret")
POLICY_ADMIN = bearer("policy-admin-secret")


@pytest.mark.parametrize("destination", ["globex/{repository}", "{repository}", "../globex/x"])
async def test_a_tenant_admin_cannot_route_into_another_tenants_namespace(
    tmp_path: Path, destination: str
) -> None:
    config = admin_config(tmp_path / "state")
    async with running_sidecar(config) as running:
        stub = admin_stub(running.channel)
        serving = (await assert_serving(running)).bundle_revision
        rule = {"id": "acme-steal", "match": {"repository": "acme/*"},
                "set": {"destination_repository": destination}}  # fmt: skip
        overlay = write_data(
            tmp_path / "overlay", "replication/tenants", {"acme": {"rules": [rule]}}
        )
        bundle = build_bundle_bytes(
            config, tmp_path / "steal.tar.gz", "steal-1", overlays=(overlay,)
        )

        report = await stub.ValidateBundle(
            pb.ValidateBundleRequest(bundle=bundle), metadata=TENANT_ADMIN
        )
        assert not report.valid
        assert any("destination_repository" in p for p in report.problems), report.problems
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.PublishBundle(pb.PublishBundleRequest(bundle=bundle), metadata=TENANT_ADMIN)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = refused.value.details() or ""
        assert (
            f"rule 'acme-steal' of tenant 'acme' sets destination_repository '{destination}'"
            in (details)
        ), details

        log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=2), metadata=POLICY_ADMIN)
        assert [(e.action, e.outcome) for e in log.events] == [
            ("PublishBundle", "rejected"),
            ("ValidateBundle", "rejected"),
        ]
        assert (await assert_serving(running)).bundle_revision == serving

"""The PolicyAdmin gRPC servicer: translates messages, credentials and errors; AdminService decides."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api._auth import Listener, call_credentials
from sidecar.api._reconcile_rpc import impact_to_proto
from sidecar.api.status import abort
from sidecar.audit import AuditRecord
from sidecar.bundles.validate import ValidationReport
from sidecar.errors import InvalidArgument, SidecarError
from sidecar.governance import AdminService, Credentials, StoredRevision
from sidecar.reconcile import Reconciler

__all__ = ["AdminServicer"]

_T = TypeVar("_T")
_DEFAULT_LIMIT = 100
_MAX_LIMIT = 1000


class AdminServicer(pb_grpc.PolicyAdminServicer):  # type: ignore[misc]  # generated base is untyped
    """Implements freightliner.policy.v1.PolicyAdmin."""

    def __init__(
        self,
        admin: AdminService,
        listener: Listener | None = None,
        *,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._admin = admin
        self._listener = listener or Listener("plain", "")
        # ValidateBundle's preview_impact: None when this sidecar does not reconcile.
        self._reconciler = reconciler

    async def PublishBundle(
        self, request: pb.PublishBundleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.PublishBundleResponse:
        """Validate, sign, publish and activate a bundle."""
        out = await _call(
            context,
            self._listener,
            lambda creds: self._admin.publish(creds, request.bundle, request.revision),
        )
        return pb.PublishBundleResponse(
            revision=out.revision,
            digest=out.digest,
            previous_revision=out.previous_revision,
            location=out.location,
            changed_files=list(out.changes.changed),
            tenants=list(out.changes.tenants),
            signed_by_sidecar=out.signed_by_sidecar,
            audit_seq=out.audit_seq,
        )

    async def ListRevisions(
        self, request: pb.ListRevisionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListRevisionsResponse:
        """List published revisions, newest first."""
        out = await _call(
            context,
            self._listener,
            lambda creds: self._admin.list_revisions(
                creds, tenant=request.tenant, limit=_limit(request.limit)
            ),
        )
        return pb.ListRevisionsResponse(
            revisions=[_revision(r, r.revision == out.active) for r in out.revisions]
        )

    async def Rollback(
        self, request: pb.RollbackRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RollbackResponse:
        """Publish an earlier revision again."""
        if not request.revision:
            await abort(context, InvalidArgument("revision", "required"))
        out = await _call(
            context, self._listener, lambda creds: self._admin.rollback(creds, request.revision)
        )
        return pb.RollbackResponse(
            revision=out.revision,
            previous_revision=out.previous_revision,
            digest=out.digest,
            audit_seq=out.audit_seq,
        )

    async def GetAuditLog(
        self, request: pb.GetAuditLogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAuditLogResponse:
        """Return audit records, newest first."""
        records = await _call(
            context,
            self._listener,
            lambda creds: self._admin.audit_log(
                creds,
                tenant=request.tenant,
                limit=_limit(request.limit),
                before_seq=max(0, request.before_seq),
            ),
        )
        return pb.GetAuditLogResponse(events=[_event(r) for r in records])

    async def ValidateBundle(
        self, request: pb.ValidateBundleRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ValidateBundleResponse:
        """Run every validation check; an invalid bundle is an answer, not an error.

        With ``preview_impact``, a valid bundle's impact preview too; when it cannot be computed
        (no reconciler, registries unreadable, an unsigned bundle) ``impact_error`` says why and
        the validation answer stands.
        """
        report = await _call(
            context, self._listener, lambda creds: self._admin.validate(creds, request.bundle)
        )
        response = _report(report)
        if request.preview_impact:
            await self._impact(request.bundle, report, response)
        return response

    async def _impact(
        self, raw: bytes, report: ValidationReport, response: pb.ValidateBundleResponse
    ) -> None:
        if not report.valid:
            response.impact_error = "not computed: the bundle is not valid"
            return
        if self._reconciler is None or not self._reconciler.sources:
            response.impact_error = (
                "not computed: this sidecar does not reconcile (policy.reconcile.sources is empty)"
            )
            return
        try:
            preview = await self._reconciler.preview(raw)
        except SidecarError as exc:
            response.impact_error = f"not computed: {exc.message}"
            return
        response.impact.CopyFrom(impact_to_proto(preview.impact))
        unreadable = {**preview.before.unreadable, **preview.after.unreadable}
        if unreadable:
            response.impact_error = "incomplete: registries unreadable: " + "; ".join(
                f"{name}: {why}" for name, why in sorted(unreadable.items())
            )


async def _call(
    context: grpc.aio.ServicerContext[Any, Any],
    listener: Listener,
    action: Callable[[Credentials], Awaitable[_T]],
) -> _T:
    credentials = call_credentials(context, listener)
    try:
        return await action(credentials)
    except SidecarError as exc:
        await abort(context, exc)


def _limit(requested: int) -> int:
    return _DEFAULT_LIMIT if requested <= 0 else min(requested, _MAX_LIMIT)


def _revision(revision: StoredRevision, active: bool) -> pb.Revision:
    return pb.Revision(
        revision=revision.revision,
        digest=revision.digest,
        published_at=revision.published_at,
        published_by=revision.published_by,
        active=active,
        size_bytes=revision.size_bytes,
        changed_files=list(revision.changed_files),
        tenants=list(revision.tenants),
    )


def _event(record: AuditRecord) -> pb.AuditEvent:
    event = record.event
    return pb.AuditEvent(
        seq=record.seq,
        at=record.at,
        actor=event.actor,
        action=event.action,
        old_revision=event.old_revision,
        new_revision=event.new_revision,
        digest=event.digest,
        hash=record.hash,
        outcome=event.outcome,
        changed_files=list(event.changed_files),
        detail=event.detail,
        prev_hash=record.prev_hash,
        tenants=list(event.tenants),
    )


def _report(report: ValidationReport) -> pb.ValidateBundleResponse:
    return pb.ValidateBundleResponse(
        valid=report.valid,
        problems=[str(p) for p in report.problems],
        revision=report.revision,
        digest=report.digest,
        details=[
            pb.BundleProblem(check=p.check, location=p.location, message=p.message)
            for p in report.problems
        ],
        files=list(report.files),
        signed=report.signed,
        tests_run=report.tests_run,
    )

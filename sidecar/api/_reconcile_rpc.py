"""The Reconcile RPC of PolicyService: the plan, then (unless dry_run) its execution, as a stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar.api._auth import CallAuth
from sidecar.api._replication_rpcs import job_to_proto
from sidecar.api.status import abort
from sidecar.errors import InvalidArgument, NotEnabled, SidecarError
from sidecar.reconcile import Impact, Plan, PlanAction, Reconciler

__all__ = ["ReconcileRpc", "action_to_proto", "impact_to_proto", "summary_to_proto"]


def action_to_proto(action: PlanAction, *, blocked: str = "") -> pb.ReconcileAction:
    """Return the gRPC message of one planned action (``blocked`` overrides the plan's)."""
    return pb.ReconcileAction(
        kind=action.kind,
        registry=action.registry,
        repository=action.repository,
        tag=action.tag,
        digest=action.digest,
        source=action.source,
        size_bytes=action.size_bytes,
        priority=action.priority,
        rank=action.rank,
        decision_id=action.decision_id,
        bundle_revision=action.bundle_revision,
        reasons=list(action.reasons),
        blocked=blocked or action.blocked,
    )


def summary_to_proto(plan: Plan) -> pb.ReconcileSummary:
    """Return the gRPC message of a plan's totals."""
    return pb.ReconcileSummary(
        images=plan.images,
        degraded=plan.degraded,
        bundle_revision=plan.bundle_revision,
        counts=plan.counts(),
        bytes_to_copy=plan.bytes_to_copy,
        bytes_freed=plan.bytes_freed,
        unreadable=dict(plan.unreadable),
    )


def impact_to_proto(impact: Impact) -> pb.ReconcileImpact:
    """Return the gRPC message of an impact preview."""
    return pb.ReconcileImpact(
        changes=[
            pb.ReconcileChange(
                kind=c.kind, image=c.image, target=c.target, before=c.before, after=c.after,
                size_bytes=c.size_bytes,
            )
            for c in impact.changes
        ],
        before_revision=impact.before_revision,
        after_revision=impact.after_revision,
        totals=impact.totals(),
    )  # fmt: skip


class ReconcileRpc:
    """Mixed into the PolicyService servicer; ``self._reconciler`` is None when it is not wired."""

    _reconciler: Reconciler | None
    _auth: CallAuth | None

    async def Reconcile(
        self, request: pb.ReconcileRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ReconcileEvent]:
        """Stream the plan's actions and summary, then (dry_run false) what applying it did."""
        if self._auth is not None:
            # Fleet-wide: data.system.authz must grant action Reconcile (no tenant narrows it).
            await self._auth.admit(context, "Reconcile")
        if self._reconciler is None:
            await abort(context, NotEnabled("Reconcile is not enabled"))
        if request.candidate_bundle:
            async for event in self._preview(self._reconciler, request, context):
                yield event
            return
        dry_run = request.dry_run if request.HasField("dry_run") else True
        try:
            plan, observation = await self._reconciler.observe_and_plan()
            for action in plan.actions:
                yield pb.ReconcileEvent(planned=action_to_proto(action))
            yield pb.ReconcileEvent(summary=summary_to_proto(plan))
            if dry_run:
                yield pb.ReconcileEvent(done="dry run: nothing changed")
                return
            report = await self._reconciler.apply(plan, observation)
        except SidecarError as exc:
            await abort(context, exc)
        for job in report.jobs:
            yield pb.ReconcileEvent(job=job_to_proto(job))
        for action in report.removed:
            yield pb.ReconcileEvent(removed=action_to_proto(action))
        for action, why in report.refused:
            yield pb.ReconcileEvent(refused=action_to_proto(action, blocked=why))
        yield pb.ReconcileEvent(done=report.stopped or "applied")

    @staticmethod
    async def _preview(
        reconciler: Reconciler,
        request: pb.ReconcileRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.ReconcileEvent]:
        """The impact preview: the candidate's plan (marked preview), its summary, the diff."""
        if request.HasField("dry_run") and not request.dry_run:
            problem = "an impact preview never applies (leave dry_run unset or true)"
            await abort(context, InvalidArgument("candidate_bundle", problem))
        try:
            preview = await reconciler.preview(request.candidate_bundle)
        except SidecarError as exc:
            await abort(context, exc)
        for action in preview.after.actions:
            yield pb.ReconcileEvent(planned=action_to_proto(action), preview=True)
        yield pb.ReconcileEvent(summary=summary_to_proto(preview.after), preview=True)
        yield pb.ReconcileEvent(impact=impact_to_proto(preview.impact), preview=True)
        yield pb.ReconcileEvent(done="preview: nothing changed", preview=True)

"""The replication RPCs of PolicyService (Replicate, GetJob, ListJobs, WatchJob): translation only."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar.api._auth import CallAuth
from sidecar.api.convert import decide_request_from_proto, decide_response_to_proto
from sidecar.api.status import abort
from sidecar.errors import InvalidArgument, NotEnabled, SidecarError
from sidecar.governance import Admission
from sidecar.model.jobs import Job, JobState
from sidecar.replicate import ReplicationService
from sidecar.telemetry import request_parent

__all__ = ["ReplicationRpcs", "job_to_proto"]

_DEFAULT_LIMIT = 100
_MAX_LIMIT = 10_000


def job_to_proto(job: Job) -> pb.Job:
    """Return the gRPC message for a job."""
    result = job.result
    done = (
        {
            "bytes_moved": result.bytes_moved,
            "blobs_copied": result.blobs_copied,
            "blobs_skipped": result.blobs_skipped,
            "blobs_mounted": result.blobs_mounted,
            "referrers_copied": result.referrers_copied,
            "requests": result.requests,
        }
        if result is not None
        else {}
    )
    return pb.Job(
        job_id=job.job_id,
        state=job.state.value,
        source=job.source,
        destination=job.destination,
        digest=job.spec.digest,
        priority=job.spec.priority,
        bytes_total=job.bytes_total,
        bytes_done=job.bytes_done,
        blobs_total=job.blobs_total,
        blobs_done=job.blobs_done,
        attempts=job.attempts,
        error=job.error,
        error_code=job.error_code,
        decision_id=job.spec.decision_id,
        bundle_revision=job.spec.bundle_revision,
        created_at=job.created_at,
        updated_at=job.updated_at,
        dry_run=job.spec.dry_run,
        kind=job.spec.kind,
        **done,
    )


class ReplicationRpcs:
    """Mixed into the PolicyService servicer; ``self._replication`` is None when replication is off."""

    _replication: ReplicationService | None
    _auth: CallAuth | None

    async def _admit(
        self, context: grpc.aio.ServicerContext[Any, Any], action: str
    ) -> Admission | None:
        return await self._auth.admit(context, action) if self._auth is not None else None

    async def _visible(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        admission: Admission | None,
        action: str,
        job: Job,
    ) -> None:
        """Refuse a job of another tenant (its source and destination repositories say whose)."""
        if self._auth is None or admission is None or _sees(admission, job):
            return
        await self._auth.deny(
            context, admission, action,
            f"job_id: {job.job_id!r} is not a job of {admission.identity.subject}'s tenants",
        )  # fmt: skip

    async def _service(self, context: grpc.aio.ServicerContext[Any, Any]) -> ReplicationService:
        if self._replication is None:
            await abort(context, NotEnabled("replication is not enabled on this sidecar"))
        return self._replication

    async def Replicate(
        self, request: pb.ReplicateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReplicateResponse:
        """Decide, persist one job per route, and return the decision with the job ids."""
        service = await self._service(context)
        parent = request_parent(context.invocation_metadata() or ())
        model = decide_request_from_proto(request.request)
        if self._auth is not None:
            caller = await self._auth.caller(context, "Replicate", model.caller)
            model = dataclasses.replace(model, caller=caller)
        try:
            outcome = await service.replicate(model, dry_run=request.dry_run, parent=parent)
        except SidecarError as exc:
            await abort(context, exc)
        return pb.ReplicateResponse(
            decision=decide_response_to_proto(outcome.result, request.request.request_id),
            job_ids=[j.job_id for j in outcome.jobs],
            jobs=[job_to_proto(j) for j in outcome.jobs],
        )

    async def GetJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Job:
        """Return one job by id."""
        admission = await self._admit(context, "GetJob")
        service = await self._service(context)
        if not request.job_id:
            await abort(context, InvalidArgument("job_id", "required"))
        try:
            job = await service.get(request.job_id)
        except SidecarError as exc:
            await abort(context, exc, job_id=request.job_id)
        await self._visible(context, admission, "GetJob", job)
        return job_to_proto(job)

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListJobsResponse:
        """Return jobs, newest first, optionally filtered by state (a tenant's own jobs only)."""
        admission = await self._admit(context, "ListJobs")
        service = await self._service(context)
        state = None
        if request.state:
            try:
                state = JobState(request.state)
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                problem = f"unknown job state {request.state!r} (known: {known})"
                await abort(context, InvalidArgument("state", problem))
        if request.limit < 0 or request.limit > _MAX_LIMIT:
            await abort(context, InvalidArgument("limit", f"must be between 0 and {_MAX_LIMIT}"))
        limit = request.limit or _DEFAULT_LIMIT
        if admission is None or admission.platform:
            jobs = await service.list_jobs(state=state, limit=limit)
        else:
            # Filtered after reading: a tenant's jobs among the newest _MAX_LIMIT.
            recent = await service.list_jobs(state=state, limit=_MAX_LIMIT)
            jobs = [j for j in recent if _sees(admission, j)][:limit]
        return pb.ListJobsResponse(jobs=[job_to_proto(j) for j in jobs])

    async def WatchJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.Job]:
        """Stream the job's progress until it reaches a terminal state."""
        admission = await self._admit(context, "WatchJob")
        service = await self._service(context)
        if not request.job_id:
            await abort(context, InvalidArgument("job_id", "required"))
        try:
            if admission is not None:
                await self._visible(
                    context, admission, "WatchJob", await service.get(request.job_id)
                )
            async for job in service.watch(request.job_id):
                yield job_to_proto(job)
        except SidecarError as exc:
            await abort(context, exc, job_id=request.job_id)


def _sees(admission: Admission, job: Job) -> bool:
    spec = job.spec
    return admission.sees_repository(spec.source_repository) or admission.sees_repository(
        spec.destination_repository
    )

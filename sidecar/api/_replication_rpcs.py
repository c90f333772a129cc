"""The replication RPCs of PolicyService (Replicate, GetJob, ListJobs, WatchJob): translation only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, NoReturn

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar.api.convert import decide_request_from_proto, decide_response_to_proto
from sidecar.api.status import grpc_status
from sidecar.errors import SidecarError
from sidecar.model.jobs import Job, JobState
from sidecar.replicate import ReplicationService
from sidecar.telemetry import extract_context

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
        **done,
    )


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: SidecarError) -> NoReturn:
    await context.abort(grpc_status(exc.code), exc.message)
    raise AssertionError("context.abort returned")  # abort always raises


class ReplicationRpcs:
    """Mixed into the PolicyService servicer; ``self._replication`` is None when replication is off."""

    _replication: ReplicationService | None

    async def _service(self, context: grpc.aio.ServicerContext[Any, Any]) -> ReplicationService:
        if self._replication is None:
            await context.abort(
                grpc.StatusCode.UNIMPLEMENTED, "replication is not enabled on this sidecar"
            )
            raise AssertionError("context.abort returned")
        return self._replication

    async def Replicate(
        self, request: pb.ReplicateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ReplicateResponse:
        """Decide, persist one job per route, and return the decision with the job ids."""
        service = await self._service(context)
        parent = extract_context(context.invocation_metadata() or ())
        try:
            outcome = await service.replicate(
                decide_request_from_proto(request.request), dry_run=request.dry_run, parent=parent
            )
        except SidecarError as exc:
            await _abort(context, exc)
        return pb.ReplicateResponse(
            decision=decide_response_to_proto(outcome.result, request.request.request_id),
            job_ids=[j.job_id for j in outcome.jobs],
            jobs=[job_to_proto(j) for j in outcome.jobs],
        )

    async def GetJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.Job:
        """Return one job by id."""
        service = await self._service(context)
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id: required")
        try:
            return job_to_proto(await service.get(request.job_id))
        except SidecarError as exc:
            await _abort(context, exc)

    async def ListJobs(
        self, request: pb.ListJobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListJobsResponse:
        """Return jobs, newest first, optionally filtered by state."""
        service = await self._service(context)
        state = None
        if request.state:
            try:
                state = JobState(request.state)
            except ValueError:
                known = ", ".join(s.value for s in JobState)
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"state: unknown job state {request.state!r} (known: {known})",
                )
        if request.limit < 0 or request.limit > _MAX_LIMIT:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"limit: must be between 0 and {_MAX_LIMIT}"
            )
        jobs = await service.list_jobs(state=state, limit=request.limit or _DEFAULT_LIMIT)
        return pb.ListJobsResponse(jobs=[job_to_proto(j) for j in jobs])

    async def WatchJob(
        self, request: pb.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.Job]:
        """Stream the job's progress until it reaches a terminal state."""
        service = await self._service(context)
        if not request.job_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "job_id: required")
        try:
            async for job in service.watch(request.job_id):
                yield job_to_proto(job)
        except SidecarError as exc:
            await _abort(context, exc)

"""The ResolvePull RPC of PolicyService: translation between messages and the pull resolver."""

from __future__ import annotations

from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar.api.status import grpc_status
from sidecar.errors import SidecarError
from sidecar.health import PullCandidate, PullResolver
from sidecar.model.decision import ImageRef

__all__ = ["ResolvePullRpc", "candidate_to_proto"]


def candidate_to_proto(candidate: PullCandidate) -> pb.PullCandidate:
    """Return the gRPC message for one considered registry."""
    return pb.PullCandidate(
        registry=candidate.registry,
        repository=candidate.repository,
        region=candidate.region,
        proximity=candidate.proximity,
        healthy=candidate.healthy,
        holds=bool(candidate.holds),
        problem=candidate.problem,
        pull_ref=candidate.pull_ref,
    )


class ResolvePullRpc:
    """Mixed into the PolicyService servicer; ``self._resolver`` is None when it is not wired."""

    _resolver: PullResolver | None

    async def ResolvePull(
        self, request: pb.ResolvePullRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolvePullResponse:
        """Answer where to pull the image now, or abort naming why nowhere will do."""
        if self._resolver is None:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "ResolvePull is not enabled")
            raise AssertionError("context.abort returned")
        image = request.image
        ref = ImageRef(image.registry, image.repository, image.tag, image.digest)
        try:
            answer = await self._resolver.resolve(ref, request.client_region)
        except SidecarError as exc:
            await context.abort(grpc_status(exc.code), exc.message)
            raise AssertionError("context.abort returned") from exc
        chosen = answer.chosen
        return pb.ResolvePullResponse(
            registry=chosen.registry,
            repository=chosen.repository,
            reference=answer.digest,
            alternatives=[c.registry for c in answer.alternatives],
            digest=answer.digest,
            region=chosen.region,
            proximity=chosen.proximity,
            pull_ref=chosen.pull_ref,
            candidates=[candidate_to_proto(c) for c in answer.candidates],
        )

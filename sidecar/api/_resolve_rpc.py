"""The ResolvePull RPC of PolicyService: translation between messages and the pull resolver."""

from __future__ import annotations

import dataclasses
from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar.api._auth import CallAuth
from sidecar.api.status import abort
from sidecar.errors import NotEnabled, NotFound, SidecarError
from sidecar.governance import Admission
from sidecar.health import PullAnswer, PullCandidate, PullResolver
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
    _auth: CallAuth | None

    async def ResolvePull(
        self, request: pb.ResolvePullRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ResolvePullResponse:
        """Answer where to pull the image now, or abort naming why nowhere will do."""
        admission = await self._auth.admit(context, "ResolvePull") if self._auth else None
        if self._auth and admission and not admission.sees_registry(request.image.registry):
            await self._auth.deny(
                context, admission, "ResolvePull",
                f"image.registry: {request.image.registry!r} is dedicated to other tenants",
            )  # fmt: skip
        if self._resolver is None:
            await abort(context, NotEnabled("ResolvePull is not enabled"))
        image = request.image
        ref = ImageRef(image.registry, image.repository, image.tag, image.digest)
        try:
            answer = await self._resolver.resolve(ref, request.client_region)
        except SidecarError as exc:
            await abort(context, exc)
        if admission is not None and not admission.platform:
            visible = _visible(answer, admission)
            if visible is None:
                nowhere = "no registry shared with or dedicated to your tenant holds the image"
                await abort(context, NotFound(nowhere))
            answer = visible
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


def _visible(answer: PullAnswer, admission: Admission) -> PullAnswer | None:
    """The answer with every registry dedicated to other tenants left out (None: nothing left)."""
    candidates = tuple(c for c in answer.candidates if admission.sees_registry(c.registry))
    alternatives = tuple(c for c in answer.alternatives if admission.sees_registry(c.registry))
    chosen = answer.chosen
    if not admission.sees_registry(chosen.registry):
        if not alternatives:
            return None
        chosen, alternatives = alternatives[0], alternatives[1:]
    return dataclasses.replace(
        answer, chosen=chosen, alternatives=alternatives, candidates=candidates
    )

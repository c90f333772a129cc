"""The PolicyService gRPC servicer: translates messages and delegates to DecisionService."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api._auth import CallAuth
from sidecar.api._reconcile_rpc import ReconcileRpc
from sidecar.api._replication_rpcs import ReplicationRpcs
from sidecar.api._resolve_rpc import ResolvePullRpc
from sidecar.api.convert import (
    decide_request_from_proto,
    decide_response_to_proto,
    error_detail_to_proto,
    explain_response_to_proto,
)
from sidecar.api.status import abort
from sidecar.decide import DecisionService
from sidecar.errors import InvalidArgument, NotFound, SidecarError
from sidecar.health import PullResolver
from sidecar.reconcile import Reconciler
from sidecar.replicate import ReplicationService
from sidecar.telemetry import request_parent

__all__ = ["PolicyServicer"]

# DecideStream answers out of order (each answer echoes request_id) so one slow decision does not
# hold back the stream; this bounds how many decisions of one stream are in flight or answered but
# not yet taken by gRPC at once: a caller that does not read its answers stops the stream's
# request reading (and, by HTTP/2 flow control, its own sending) instead of growing a queue.
STREAM_WINDOW = 64


class PolicyServicer(ReplicationRpcs, ResolvePullRpc, ReconcileRpc, pb_grpc.PolicyServiceServicer):  # type: ignore[misc]  # generated base is untyped
    """Implements freightliner.policy.v1.PolicyService (replication RPCs and ResolvePull mixed in)."""

    def __init__(
        self,
        decisions: DecisionService,
        replication: ReplicationService | None = None,
        resolver: PullResolver | None = None,
        *,
        auth: CallAuth | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._decisions = decisions
        self._reconciler = reconciler
        self._replication = replication
        self._resolver = resolver
        # None: no policy.auth, callers are trusted as they say (the loopback-only default).
        self._auth = auth
        self._streams: set[asyncio.Queue[pb.DecideResponse | None]] = set()

    @property
    def stream_answers_held(self) -> int:
        """Return how many DecideStream answers (all open streams) wait to be taken by gRPC."""
        return sum(queue.qsize() for queue in self._streams)

    async def Decide(
        self, request: pb.DecideRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.DecideResponse:
        """Answer one decision, or abort with the status of the error."""
        parent = request_parent(context.invocation_metadata() or ())
        model = decide_request_from_proto(request)
        if self._auth is not None:
            caller = await self._auth.caller(context, "Decide", model.caller)
            model = dataclasses.replace(model, caller=caller)
        try:
            result = await self._decisions.decide(model, parent=parent)
        except SidecarError as exc:
            await abort(context, exc)
        return decide_response_to_proto(result, request.request_id)

    async def DecideStream(
        self,
        request_iterator: AsyncIterator[pb.DecideRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[pb.DecideResponse]:
        """Answer a stream of requests; a failed request gets an in-band error, the stream goes on."""
        parent = request_parent(context.invocation_metadata() or ())
        auth = self._auth
        # Authorised once per stream; each request's caller is narrowed from that identity.
        admission = await auth.admit(context, "DecideStream") if auth is not None else None
        # A window slot is taken per request and given back only once its answer was yielded, so
        # at most STREAM_WINDOW answers (plus the end marker) are ever queued.
        answers: asyncio.Queue[pb.DecideResponse | None] = asyncio.Queue(STREAM_WINDOW + 1)
        window = asyncio.Semaphore(STREAM_WINDOW)

        async def answer(msg: pb.DecideRequest) -> None:
            try:
                model = decide_request_from_proto(msg)
                if auth is not None and admission is not None:
                    caller = auth.narrow(admission, "DecideStream", model.caller)
                    model = dataclasses.replace(model, caller=caller)
                result = await self._decisions.decide(model, parent=parent)
                response = decide_response_to_proto(result, msg.request_id)
            except SidecarError as exc:
                response = pb.DecideResponse(
                    request_id=msg.request_id, error=error_detail_to_proto(exc)
                )
            except BaseException:
                window.release()
                raise
            answers.put_nowait(response)

        async def pump() -> None:
            try:
                async with asyncio.TaskGroup() as group:
                    async for msg in request_iterator:
                        await window.acquire()
                        group.create_task(answer(msg))
            finally:
                # Also when the request stream fails (e.g. a malformed message): the answer loop
                # below must end and report it, not wait for the caller's deadline.
                await answers.put(None)

        self._streams.add(answers)
        pumper = asyncio.create_task(pump())
        try:
            while (item := await answers.get()) is not None:
                try:
                    yield item
                finally:
                    window.release()
            try:
                await pumper
            except BaseExceptionGroup as failed:
                raise failed.exceptions[0] from None  # the stream's own error, not the group
        finally:
            pumper.cancel()
            self._streams.discard(answers)

    async def Explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExplainResponse:
        """Return the stored record of an earlier decision."""
        admission = await self._auth.admit(context, "Explain") if self._auth else None
        if not request.decision_id:
            await abort(context, InvalidArgument("decision_id", "required"))
        record = self._decisions.explain(request.decision_id)
        if record is None:
            missing = NotFound(
                f"decision_id: no record of {request.decision_id!r} "
                "(unknown, or older than the decision-record retention)"
            )
            await abort(context, missing, decision_id=request.decision_id)
        if self._auth and admission and not admission.sees_record(record.input):
            await self._auth.deny(
                context,
                admission,
                "Explain",
                f"decision_id: {request.decision_id!r} is not a decision of "
                f"{admission.identity.subject}'s tenants",
            )
        return explain_response_to_proto(record)

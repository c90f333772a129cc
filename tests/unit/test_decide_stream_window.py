"""DecideStream backpressure: a caller that does not read its answers cannot grow server memory.

Issue 15: the answer queue was unbounded, so every request of a non-reading caller was decided and
its answer queued. Now at most STREAM_WINDOW answers are held; the pump stops reading requests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api.policy_service import STREAM_WINDOW, PolicyServicer
from sidecar.decide import DecisionService
from sidecar.model.decision import Decision, DecisionResult, Reason

REQUESTS = 2000
# Answers big enough that the HTTP/2 flow-control windows hold only a few of them.
_REASON = Reason("BIG", "x" * 32 * 1024)


class _CountingDecisions:
    """Stands in for DecisionService: counts decisions made, answers each with a large reason."""

    def __init__(self) -> None:
        self.calls = 0

    async def decide(self, request: Any, parent: Any = None) -> DecisionResult:
        self.calls += 1
        await asyncio.sleep(0)
        decision = Decision(allow=True, reasons=(_REASON,))
        return DecisionResult(decision, f"d{self.calls}", "rev-1")


def _request(i: int) -> pb.DecideRequest:
    return pb.DecideRequest(
        request_id=f"r{i}",
        image=pb.Image(registry="ci", repository="team/app", tag="v1"),
    )


async def _settled(decisions: _CountingDecisions) -> int:
    """Wait until the decision count stops moving (or every request was decided); return it."""
    last, still = -1, 0
    for _ in range(2000):
        if decisions.calls >= REQUESTS:
            break
        still = still + 1 if decisions.calls == last else 0
        if still >= 50 and decisions.calls >= STREAM_WINDOW:
            break
        last = decisions.calls
        await asyncio.sleep(0.01)
    return decisions.calls


async def test_a_non_reading_stream_holds_at_most_the_window_and_others_are_served() -> None:
    decisions = _CountingDecisions()
    servicer = PolicyServicer(cast(DecisionService, decisions))
    server = grpc.aio.server()
    pb_grpc.add_PolicyServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as slow,
            grpc.aio.insecure_channel(f"127.0.0.1:{port}") as other,
        ):

            async def requests() -> AsyncIterator[pb.DecideRequest]:
                for i in range(REQUESTS):
                    yield _request(i)

            call = pb_grpc.PolicyServiceStub(slow).DecideStream(requests())
            # Start the call, read nothing: only the server's window should bound its work.
            await call.wait_for_connection()
            decided = await _settled(decisions)
            # Decided = held + answers gRPC took (a few fit the flow-control windows); never all.
            assert decided < REQUESTS // 4, f"{decided} of {REQUESTS} decided for a non-reader"
            assert servicer.stream_answers_held <= STREAM_WINDOW

            # Another caller is served meanwhile.
            stub = pb_grpc.PolicyServiceStub(other)
            answer = await stub.Decide(_request(-1), timeout=10)
            assert answer.decision.allow

            # Reading resumes the stream: every request is answered in the end.
            answered = {a.request_id async for a in call}
            assert answered == {f"r{i}" for i in range(REQUESTS)}
            assert servicer.stream_answers_held == 0
    finally:
        await server.stop(None)

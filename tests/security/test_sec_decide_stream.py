"""Issue 15: DecideStream's answer queue was unbounded for a caller that does not read.

The attack opens a DecideStream, sends thousands of requests and never reads an answer. Before the
fix, the server kept reading and deciding, queueing every answer in memory. Now each stream holds
at most 64 unanswered answers: the server stops reading its requests, and HTTP/2 flow control
stops the attacker's sending. Observed through the real process: its decision counter on
``/metrics`` stops far below the requests sent, while other callers are answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from tests.support.security import (
    assert_serving,
    attacked_sidecar,
    decide_request,
    metric_value,
    sidecar_config,
)

pytestmark = pytest.mark.integration

REQUESTS = 3000
DECISIONS = "policy_sidecar_decisions_total"


async def test_a_stream_that_never_reads_cannot_make_the_sidecar_decide_everything(
    tmp_path: Path,
) -> None:
    labels = {"criticality": "high"}
    async with attacked_sidecar(sidecar_config(), tmp_path) as running:
        before = await metric_value(running, DECISIONS)
        sent = 0

        async def requests() -> AsyncIterator[pb.DecideRequest]:
            nonlocal sent
            for i in range(REQUESTS):
                sent += 1
                yield decide_request(i, labels=labels)

        # The attacker's own channel, without BDP probing: its receive window stays at 64 KiB,
        # so what bounds the server's work is the server, not a generous client buffer.
        options = [("grpc.http2.bdp_probe", 0)]
        async with grpc.aio.insecure_channel(running.address, options=options) as attacker:
            call = pb_grpc.PolicyServiceStub(attacker).DecideStream(requests())
            await call.wait_for_connection()
            decided, still = -1.0, 0
            while still < 20:  # ~2 s without a new decision: the server stopped reading
                await asyncio.sleep(0.1)
                now = await metric_value(running, DECISIONS) - before
                still = still + 1 if now == decided else 0
                decided = now
                if decided >= REQUESTS:
                    break
            assert decided < REQUESTS / 4, f"{decided:.0f} of {REQUESTS} decided for a non-reader"
            print(f"non-reader: {sent} requests sent, {decided:.0f} decided")

            # Another caller is answered while the attacker's stream is stuck. Its answer may
            # come from the fail mode on a loaded machine (the stuck stream's decisions share
            # OPA with it; docs/security.md, residual risks), but it is answered, not queued.
            answer = await running.stub.Decide(decide_request(0), timeout=15)
            assert answer.decision_id, "another caller was not answered during the attack"
            call.cancel()
        await assert_serving(running)

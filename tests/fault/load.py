"""Decide traffic during a fault: a few concurrent clients asking about the images pushed so far.

Every call is timed and classified — served (OPA answered), degraded (the fail mode answered),
failed (an RPC error) — and any answer slower than the deadline is counted as over it. Calls use
a generous gRPC timeout (three deadlines), so a hang shows up as a slow call, not a silent retry.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import grpc

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from tests.fault.process import CHANNEL_OPTIONS
from tests.fault.world import Pushed

__all__ = ["DecideLoad", "Sample", "decide_load"]

Outcome = Literal["served", "degraded", "failed"]


@dataclass(frozen=True)
class Sample:
    """One Decide call: when it started, how it ended, how long it took."""

    at: float
    outcome: Outcome
    latency_s: float


@dataclass
class DecideLoad:
    """The samples of a running load and their figures."""

    deadline_s: float
    samples: list[Sample] = field(default_factory=list)
    # "CODE: details" of every failed call, for the report.
    errors: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: Outcome) -> int:
        """Calls that ended with ``outcome``."""
        return sum(s.outcome == outcome for s in self.samples)

    @property
    def over_deadline(self) -> int:
        """Calls (of any outcome) that took longer than the deadline."""
        return sum(s.latency_s > self.deadline_s for s in self.samples)

    @property
    def max_latency_s(self) -> float:
        """The slowest call."""
        return max((s.latency_s for s in self.samples), default=0.0)

    def first_served_after(self, moment: float) -> float | None:
        """Seconds from ``moment`` until a call started after it was served by OPA again."""
        after = [
            s.at + s.latency_s for s in self.samples if s.at >= moment and s.outcome == "served"
        ]
        return min(after) - moment if after else None


async def _client(
    stub: pb_grpc.PolicyServiceStub,
    images: Sequence[Pushed],
    load: DecideLoad,
    rng: random.Random,
    pause_s: float,
) -> None:
    while True:
        if not images:
            await asyncio.sleep(0.05)
            continue
        image = rng.choice(list(images))
        ref = pb.Image(
            registry="ci", repository=image.repository, tag=image.tag, digest=image.digest
        )
        started = time.monotonic()
        outcome: Outcome
        try:
            answer = await stub.Decide(pb.DecideRequest(image=ref), timeout=3 * load.deadline_s)
            outcome = "degraded" if answer.degraded else "served"
        except grpc.aio.AioRpcError as exc:
            outcome = "failed"
            load.errors[f"{exc.code().name}: {(exc.details() or '')[:160]}"] += 1
        latency = time.monotonic() - started
        load.samples.append(Sample(started, outcome, latency))
        # A failed call (sidecar down) returns at once: pause so the load stays a trickle.
        await asyncio.sleep(pause_s if outcome != "failed" else max(pause_s, 0.1))


@contextlib.asynccontextmanager
async def decide_load(
    address: str,
    images: Sequence[Pushed],
    *,
    deadline_s: float,
    clients: int = 2,
    pause_s: float = 0.05,
    seed: int = 0,
) -> AsyncIterator[DecideLoad]:
    """Run ``clients`` Decide loops against ``address`` until the block exits.

    ``images`` is read live, so images pushed while the load runs are asked about too.
    """
    load = DecideLoad(deadline_s)
    async with grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) as channel:
        stub = pb_grpc.PolicyServiceStub(channel)
        tasks = [
            asyncio.create_task(_client(stub, images, load, random.Random(seed + n), pause_s))  # noqa: S311
            for n in range(clients)
        ]
        try:
            yield load
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

"""A Replicate call answered by the fail mode while OPA is down is decided again once OPA is back.

Real registries (tests/support/fleet.py), a real sidecar with its managed OPA. OPA is frozen
(SIGSTOP: it accepts connections and never answers), so ``closed`` denies the request as
``degraded``; once OPA answers again, the image lands exactly where OPA routes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import Config, load_config
from sidecar.config._replication import WebhookSettings
from sidecar.model.decision import DecideRequest, ImageRef
from sidecar.model.jobs import DeferredWork
from sidecar.oci import RegistryClients
from sidecar.replicate.deferred import AWAITING_POLICY, request_to_json
from tests.support.fleet import FLEET, Fleet, registry_fleet
from tests.support.images import push_image, scanned_labels
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

# clock: decisions here use the sidecar's wall clock (scan ages, token expiry)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]

_SETTLE_S = 90.0


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """The five registries; the backlog is retried every 0.2 s."""
    with registry_fleet(tmp_path, replication={"policy_retry_interval_s": 0.2}) as running:
        yield running


def _config(fleet: Fleet, state: Path) -> Config:
    config = isolated_config(load_config(fleet.config_path), state, fail_mode="closed")
    policy = config.policy
    opa = dataclasses.replace(policy.opa, deadline_ms=1000, breaker_cooldown_s=0.5)
    # No webhook: only the Replicate call may create jobs here.
    replication = dataclasses.replace(policy.replication, webhook=WebhookSettings())
    return dataclasses.replace(
        config, policy=dataclasses.replace(policy, opa=opa, replication=replication)
    )


@contextlib.contextmanager
def _frozen(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def _settled(running: RunningSidecar) -> list[pb.Job]:
    deadline = time.monotonic() + _SETTLE_S
    while True:
        jobs = list((await running.stub.ListJobs(pb.ListJobsRequest(limit=100))).jobs)
        if jobs and all(j.state in ("succeeded", "failed", "skipped") for j in jobs):
            return jobs
        assert time.monotonic() < deadline, [(j.destination, j.state, j.error) for j in jobs]
        await asyncio.sleep(0.2)


async def test_a_replicate_denied_by_the_closed_fail_mode_lands_where_opa_routes_it(
    fleet: Fleet, tmp_path: Path
) -> None:
    clients = RegistryClients(load_config(fleet.config_path).registries)
    try:
        image = await push_image(
            clients.get("ci"),
            "web/app",
            tag="prod-2.0",
            seed=7,
            labels=scanned_labels(criticality="high"),
        )
        request = pb.DecideRequest(
            image=pb.Image(registry="ci", repository="web/app", tag="prod-2.0")
        )
        async with running_sidecar(_config(fleet, tmp_path / "state")) as running:
            assert running.sidecar.runtime is not None and running.sidecar.parts is not None
            managed = running.sidecar.runtime.managed
            assert managed is not None and managed.pid is not None
            with _frozen(managed.pid):
                answer = await running.stub.Replicate(
                    pb.ReplicateRequest(request=request), timeout=30
                )
                assert answer.decision.degraded and not answer.decision.decision.allow
                assert list(answer.jobs) == []
            jobs = await _settled(running)
            verdict = await running.stub.Decide(request, timeout=30)
            assert not verdict.degraded and verdict.decision.allow
            routed = {r.registry for r in verdict.decision.routes}
            assert routed == {"prod-eu", "prod-us"}  # what the policy wants for a scanned prod tag
            assert {j.destination.split("/", 1)[0] for j in jobs} == routed
            assert {j.state for j in jobs} == {"succeeded"}
            store = running.sidecar.parts.store
            assert await store.pending_deferrals({AWAITING_POLICY}) == []
        held = set()
        for name in FLEET:
            found = await clients.get(name).head_manifest("web/app", image.digest)
            if name != "ci" and found is not None:
                held.add(name)
        assert held == routed
    finally:
        await clients.close()


async def test_unreadable_or_no_longer_valid_backlog_records_are_dropped_not_retried(
    fleet: Fleet, tmp_path: Path
) -> None:
    digest = "sha256:" + "ab" * 32
    request = request_to_json(
        DecideRequest(image=ImageRef("gone", "web/app", "prod-1", digest), event="manual")
    )
    records = [
        DeferredWork("ci", "web/app", digest, AWAITING_POLICY, "broken", 50, "d1", "{not json"),
        # Its source registry was removed from the inventory since the outage.
        DeferredWork("gone", "web/app", digest, AWAITING_POLICY, "prod-1", 40, "d2", request),
    ]
    async with running_sidecar(_config(fleet, tmp_path / "state")) as running:
        assert running.sidecar.parts is not None and running.sidecar.backlog is not None
        store = running.sidecar.parts.store
        await running.sidecar.backlog.stop()  # drained by hand below, once
        await store.defer(records)
        assert await running.sidecar.backlog.drain() == 0
        assert await store.pending_deferrals({AWAITING_POLICY}) == []
        # The same holds for destinations deferred while a registry was down.
        health = running.sidecar.health
        assert health is not None and health.recovery is not None
        await store.defer([dataclasses.replace(records[0], registry="prod-us")])
        await health.recovery.recover(["prod-us"])
        assert await store.pending_deferrals({"prod-us"}) == []
        assert list((await running.stub.ListJobs(pb.ListJobsRequest())).jobs) == []

"""Two sidecars whose managed OPAs pull signed bundles from S3 (moto), GCS and the HTTP server.

A revision published while decisions flow reaches every decision of both sidecars: the gRPC
answer, the span, the Explain record and the revision metric all name it. A sidecar can also host
the bundle server its fleet pulls from, and waits for the first bundle before it serves.
Figures: ``.venv/bin/python -m tests.bench.propagation --via-sidecars`` (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.app.sidecar import Sidecar
from sidecar.bundles.keys import generate_keypair
from sidecar.config._bundle import BundleServeSettings
from sidecar.errors import PolicyUnavailable
from sidecar.testing import InMemorySpans
from tests.support.bundle_stores import STORE_KINDS, BundleStore, bundle_store
from tests.support.fleet import free_port
from tests.support.opa import SigningKeys
from tests.support.pulling import (
    active_revisions,
    build_revision,
    feeding,
    pulling_config,
    signed_config,
)
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = pytest.mark.integration

# A safety net, not a target: the figures come from the benchmark.
_DEADLINE_S = 60.0


def _keys(tmp_path: Path) -> SigningKeys:
    return SigningKeys(*generate_keypair(tmp_path / "keys"))


async def _until_metric(sidecar: Sidecar, revision: str) -> dict[str, float]:
    deadline = time.monotonic() + _DEADLINE_S
    while (found := await active_revisions(sidecar)) != {revision: 1.0}:
        assert time.monotonic() < deadline, f"metric never showed only {revision}: {found}"
        await asyncio.sleep(0.1)
    return found


async def _assert_carried(running: RunningSidecar, revision: str, decision_id: str) -> None:
    explained = await running.stub.Explain(pb.ExplainRequest(decision_id=decision_id), timeout=10)
    assert explained.bundle_revision == revision
    decide_spans = [
        span
        for span in running.spans.by_name("policy.decide")
        if (span.attributes or {}).get("policy.decision_id") == decision_id
    ]
    assert [(s.attributes or {}).get("policy.bundle_revision") for s in decide_spans] == [revision]


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_a_revision_published_while_deciding_reaches_every_decision_of_both_sidecars(
    kind: str, tmp_path: Path
) -> None:
    config = signed_config(_keys(tmp_path))
    first = build_revision(config, tmp_path / "built", "rev-a")
    second = build_revision(config, tmp_path / "built", "rev-b")
    async with bundle_store(kind, tmp_path / kind) as store:
        await store.publish(first)
        async with (
            running_sidecar(pulling_config(config, store, tmp_path / "sidecar-1")) as one,
            running_sidecar(pulling_config(config, store, tmp_path / "sidecar-2")) as two,
        ):
            for running in (one, two):
                assert running.sidecar.runtime is not None
                assert running.sidecar.runtime.bundle_revision == "rev-a"
                assert await active_revisions(running.sidecar) == {"rev-a": 1.0}
            async with feeding([one, two]) as feeds:
                for feed, task in feeds:
                    await feed.until("rev-a", task, timeout_s=_DEADLINE_S)
                published = time.monotonic()
                await store.publish(second)
                for feed, task in feeds:
                    assert await feed.until("rev-b", task, timeout_s=_DEADLINE_S) > published
                    # Keep deciding a little: no answer falls back to the old revision.
                    await feed.more(20, task, timeout_s=_DEADLINE_S)
            for feed, _ in feeds:
                revisions = [answer.bundle_revision for answer in feed.answers]
                switch = revisions.index("rev-b")
                assert set(revisions[:switch]) == {"rev-a"}
                assert set(revisions[switch:]) == {"rev-b"}, "a decision went back to rev-a"
                assert not any(answer.degraded for answer in feed.answers)
                await _assert_carried(feed.running, "rev-b", feed.answers[-1].decision_id)
                await _assert_carried(feed.running, "rev-a", feed.answers[0].decision_id)
                assert await _until_metric(feed.running.sidecar, "rev-b") == {"rev-b": 1.0}


async def test_the_metric_follows_an_activation_without_any_decision(tmp_path: Path) -> None:
    config = signed_config(_keys(tmp_path))
    first = build_revision(config, tmp_path / "built", "rev-a")
    second = build_revision(config, tmp_path / "built", "rev-b")
    async with bundle_store("http", tmp_path / "http") as store:
        await store.publish(first)
        async with running_sidecar(pulling_config(config, store, tmp_path / "sidecar")) as running:
            assert await active_revisions(running.sidecar) == {"rev-a": 1.0}
            await store.publish(second)
            assert await _until_metric(running.sidecar, "rev-b") == {"rev-b": 1.0}
            assert running.spans.by_name("policy.decide") == []


async def test_a_sidecar_hosts_the_bundle_server_and_waits_for_the_first_bundle(
    tmp_path: Path,
) -> None:
    config = signed_config(_keys(tmp_path))
    first = build_revision(config, tmp_path / "built", "rev-a")
    second = build_revision(config, tmp_path / "built", "rev-b")
    port, upload, read = free_port(), "upload-token-for-tests", "read-token-for-tests"
    store = BundleStore("http", f"http://127.0.0.1:{port}/bundles/replication", None, upload)
    hub_config = pulling_config(config, store, tmp_path / "hub", read_token=read)
    serve = BundleServeSettings(listen=f"127.0.0.1:{port}", token=upload, read_token=read)
    hub_config = dataclasses.replace(
        hub_config,
        policy=dataclasses.replace(
            hub_config.policy,
            bundle=dataclasses.replace(hub_config.policy.bundle, serve=serve),
        ),
    )
    hub = Sidecar(hub_config, span_exporter=InMemorySpans())
    starting = asyncio.create_task(hub.start())
    try:
        while hub.bundle_server is None or not hub.bundle_server.port:
            assert not starting.done(), starting.exception()
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)
        assert not starting.done(), "started serving decisions before any bundle was published"
        assert hub.grpc is None
        await store.publish(first)
        await asyncio.wait_for(starting, _DEADLINE_S)
        assert hub.runtime is not None and hub.runtime.bundle_revision == "rev-a"
        assert hub.grpc is not None
        stored = tmp_path / "hub" / "bundle-server" / "replication.tar.gz"
        assert stored.read_bytes() == first.path.read_bytes()
        follower = pulling_config(config, store, tmp_path / "follower", read_token=read)
        async with running_sidecar(follower) as other:
            assert other.sidecar.runtime is not None
            assert other.sidecar.runtime.bundle_revision == "rev-a"
            async with feeding([other]) as feeds:
                await store.publish(second)
                feed, task = feeds[0]
                await feed.until("rev-b", task, timeout_s=_DEADLINE_S)
            await _until_metric(other.sidecar, "rev-b")
        await _until_metric(hub, "rev-b")  # the hub's own OPA pulls from itself too
    finally:
        await hub.stop()


async def test_with_nothing_published_the_startup_fails_naming_the_cause(tmp_path: Path) -> None:
    config = signed_config(_keys(tmp_path))
    async with bundle_store("http", tmp_path / "http") as store:
        pulling = pulling_config(config, store, tmp_path / "sidecar")
        opa = dataclasses.replace(pulling.policy.opa, startup_timeout_s=2.0)
        pulling = dataclasses.replace(pulling, policy=dataclasses.replace(pulling.policy, opa=opa))
        with pytest.raises(PolicyUnavailable) as err:
            async with running_sidecar(pulling):
                pass
    assert "no bundle activated (is one published? can OPA reach the store?)" in err.value.message
    assert "Bundle load failed: server replied with Not Found" in err.value.message  # OPA, quoted

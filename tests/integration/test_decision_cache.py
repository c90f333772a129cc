"""The decision cache (policy.decision_cache, issue 18) on a real sidecar and its real OPA.

Every cached answer must equal what OPA says now for the same input; crossing a scan's expiry,
a new bundle revision, the size bound and an unreachable OPA each make the sidecar ask OPA again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml
from prometheus_client import CollectorRegistry

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import build_local_bundle
from sidecar.config import load_config
from sidecar.decide import DecisionService
from sidecar.enrich import FactTrust, StaticEnricher, validate_request
from sidecar.fallback.modes import Fallback
from sidecar.model.decision import Caller, DecideRequest, ImageRef
from sidecar.policy import ManagedOpa
from sidecar.policy.decision_cache import CACHEABLE_PATH, DecisionCache
from sidecar.policy.opa import OpaEngine
from sidecar.records import DecisionRecords
from sidecar.telemetry import Telemetry
from tests.support.decision_cache import (
    CASES_CONFIG,
    cached_config,
    lookups,
    opa_says_now,
    proto_request,
)
from tests.support.fallback import closed_port
from tests.support.sidecar import RunningSidecar, running_sidecar

# Every request pins `now`: the year-ahead run proves nothing here depends on today's date.
pytestmark = pytest.mark.clock

CASES_DIR = CASES_CONFIG.parent
MAX_ENTRIES = 4


def _cases() -> list[Any]:
    found = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        if path.name == "sidecar.yaml":
            continue
        for case in yaml.safe_load(path.read_text(encoding="utf-8")) or []:
            if "request" in case:
                found.append(pytest.param(case["request"], id=f"{path.stem}: {case['name']}"))
    return found


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = cached_config(tmp_path_factory.mktemp("cache-state"), max_entries=MAX_ENTRIES)
    async with running_sidecar(config) as running:
        yield running


def _scanned(now: str, *, repository: str = "team/app") -> pb.DecideRequest:
    return proto_request(
        {
            "image": {
                "registry": "ci",
                "repository": repository,
                "tag": "prod-1.0",
                "size_bytes": 1000000,
                "labels": {
                    "security.scan.status": "passed",
                    "security.scan.completed-at": "2026-11-21T12:00:00Z",
                    "security.scan.critical": "0",
                },
            },
            "now": now,
        }
    )


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("request_doc", _cases())
async def test_a_cached_answer_equals_what_opa_says_now(
    sidecar: RunningSidecar, request_doc: dict[str, Any]
) -> None:
    first = await sidecar.stub.Decide(proto_request(request_doc))
    hits, expired = lookups(sidecar, "hit"), lookups(sidecar, "expired")
    second = await sidecar.stub.Decide(proto_request(request_doc))
    if lookups(sidecar, "expired") == expired + 1:
        # Within a millisecond of a time boundary (a scan exactly at its maximum age) the cache
        # declines and OPA decides again: the answer must still be OPA's.
        assert request_doc["now"] == "2026-11-28T12:00:00Z"
    else:
        assert lookups(sidecar, "hit") == hits + 1, "the same facts again must be answered cached"
    assert second.decision_id != first.decision_id
    assert second.decision == first.decision
    recorded, now = await opa_says_now(sidecar, second.decision_id)
    assert recorded == now


@pytest.mark.asyncio(loop_scope="module")
async def test_a_cached_decision_is_a_decision_of_its_own(sidecar: RunningSidecar) -> None:
    request = _scanned("2026-11-22T08:00:00Z", repository="audit/app")
    await sidecar.stub.Decide(request)
    seen = len(sidecar.spans.spans)
    again = await sidecar.stub.Decide(request)
    record = (
        sidecar.sidecar.decisions.explain(again.decision_id) if sidecar.sidecar.decisions else None
    )
    assert record is not None and record.cached and not record.degraded
    new = sidecar.spans.spans[seen:]
    decide_spans = [s for s in new if s.name == "policy.decide"]
    assert [s.attributes.get("policy.cached") for s in decide_spans] == [True]
    assert [s.attributes.get("policy.decision_id") for s in decide_spans] == [again.decision_id]
    # OPA was not asked: no query span under the cached decision.
    assert not [s for s in new if s.name == "opa.query"]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_scan_crossing_its_age_boundary_is_decided_again(sidecar: RunningSidecar) -> None:
    # Scanned 2026-11-21T12:00:00Z; the maximum age is 7 days: expired after 2026-11-28T12:00:00Z.
    fresh = await sidecar.stub.Decide(_scanned("2026-11-28T11:59:00Z", repository="age/app"))
    assert fresh.decision.allow and fresh.decision.routes
    hits = lookups(sidecar, "hit")
    still = await sidecar.stub.Decide(_scanned("2026-11-28T11:59:30Z", repository="age/app"))
    assert lookups(sidecar, "hit") == hits + 1 and still.decision == fresh.decision
    expired = lookups(sidecar, "expired")
    late = await sidecar.stub.Decide(_scanned("2026-11-28T12:00:01Z", repository="age/app"))
    assert lookups(sidecar, "expired") == expired + 1, "crossing the boundary must ask OPA"
    assert not late.decision.allow
    assert "SCAN_EXPIRED" in {r.code for r in late.decision.reasons}
    recorded, now = await opa_says_now(sidecar, late.decision_id)
    assert recorded == now
    # Back before the boundary (a replay of the morning): the expired answer is not reused.
    morning = await sidecar.stub.Decide(_scanned("2026-11-28T09:00:00Z", repository="age/app"))
    assert morning.decision.allow
    recorded, now = await opa_says_now(sidecar, morning.decision_id)
    assert recorded == now


@pytest.mark.asyncio(loop_scope="module")
async def test_the_cache_holds_at_most_max_entries(sidecar: RunningSidecar) -> None:
    names = [f"bound/app{i}" for i in range(MAX_ENTRIES + 1)]
    for name in names:
        await sidecar.stub.Decide(_scanned("2026-11-22T08:00:00Z", repository=name))
    hits, misses = lookups(sidecar, "hit"), lookups(sidecar, "miss")
    await sidecar.stub.Decide(_scanned("2026-11-22T08:00:00Z", repository=names[-1]))
    assert lookups(sidecar, "hit") == hits + 1
    # The oldest was evicted to keep MAX_ENTRIES: it is decided by OPA again.
    await sidecar.stub.Decide(_scanned("2026-11-22T08:00:00Z", repository=names[0]))
    assert lookups(sidecar, "miss") == misses + 1


@pytest.mark.asyncio(loop_scope="module")
async def test_a_new_revision_misses(sidecar: RunningSidecar, tmp_path: Path) -> None:
    request = _scanned("2026-11-22T08:00:00Z", repository="revision/app")
    before = await sidecar.stub.Decide(request)
    hits = lookups(sidecar, "hit")
    await sidecar.stub.Decide(request)
    assert lookups(sidecar, "hit") == hits + 1
    runtime, watcher = sidecar.sidecar.runtime, sidecar.sidecar.revisions
    assert runtime is not None and runtime.managed is not None and watcher is not None
    config = sidecar.sidecar.config
    await asyncio.to_thread(
        build_local_bundle, config, output=tmp_path / "next.tar.gz", revision="rev-cache-next"
    )
    await runtime.managed.reload(tmp_path / "next.tar.gz")
    deadline = time.monotonic() + 30
    while watcher.revision != "rev-cache-next":  # the watcher polls once a second
        assert time.monotonic() < deadline, "the revision watcher did not see the activation"
        await asyncio.sleep(0.1)
    hits = lookups(sidecar, "hit")
    after = await sidecar.stub.Decide(request)
    assert lookups(sidecar, "hit") == hits
    assert before.bundle_revision != "rev-cache-next"
    assert after.bundle_revision == "rev-cache-next"


async def test_a_degraded_answer_is_never_cached() -> None:
    config = load_config(CASES_CONFIG)
    telemetry = Telemetry("cache-test", metrics_registry=CollectorRegistry())
    engine = OpaEngine(f"http://127.0.0.1:{closed_port()}", timeout_s=0.5)
    cache = DecisionCache(10)
    service = DecisionService(
        enricher=StaticEnricher(config, trust=FactTrust.operator()),
        engine=engine.at(CACHEABLE_PATH),
        telemetry=telemetry,
        records=DecisionRecords(),
        validate=lambda r: validate_request(r, config.policy.limits, config.inventory()),
        fallback=Fallback("closed"),
        cache=cache,
    )
    request = DecideRequest(
        image=ImageRef("ci", "team/app", "prod-1.0"), caller=Caller("test", roles=("replay",))
    )
    try:
        for _ in range(2):
            result = await service.decide(request)
            assert result.degraded and not result.cached
        assert len(cache) == 0
    finally:
        await engine.close()


async def test_a_bundle_without_the_cacheable_document_still_decides_uncached(
    opa_server: ManagedOpa,
) -> None:
    # The small test bundle (tests/support/opa.py) has data.replication.decision only.
    config = load_config(CASES_CONFIG)
    telemetry = Telemetry("cache-test", metrics_registry=CollectorRegistry())
    engine = OpaEngine(opa_server.url, timeout_s=5.0, token=opa_server.token)
    cache = DecisionCache(10)
    service = DecisionService(
        enricher=StaticEnricher(config, trust=FactTrust.operator()),
        engine=engine.at(CACHEABLE_PATH, wrap_as="decision"),
        telemetry=telemetry,
        records=DecisionRecords(),
        validate=lambda r: validate_request(r, config.policy.limits, config.inventory()),
        cache=cache,
    )
    request = DecideRequest(
        image=ImageRef("ci", "team/app", "prod-1.0"), caller=Caller("test", roles=("replay",))
    )
    try:
        for _ in range(2):
            result = await service.decide(request)
            assert result.decision.allow and not result.cached and not result.degraded
        assert len(cache) == 0
    finally:
        await engine.close()

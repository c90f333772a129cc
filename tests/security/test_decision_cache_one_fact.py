"""Attack: get another request's cached decision by sending a request that differs in one fact.

The decision cache (policy.decision_cache) keys an answer by every fact of the enriched policy
input. An attacker who can make a request whose facts differ from a warm entry's in one place
(another tenant, a failed scan, an unhealthy registry, a tag in another environment...) must
never be answered from that entry: each such request is decided by OPA, its answer equals what
OPA says for its own input, and the sidecar keeps serving the original afterwards.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from tests.support.decision_cache import cached_config, lookups, opa_says_now, proto_request
from tests.support.sidecar import RunningSidecar, running_sidecar

# Every request pins `now`.
pytestmark = pytest.mark.clock

_BASE: dict[str, Any] = {
    "image": {
        "registry": "ci",
        "repository": "acme/app",
        "tag": "prod-1.0",
        "digest": "sha256:" + "ab" * 32,
        "size_bytes": 1000000,
        "labels": {
            "security.scan.status": "passed",
            "security.scan.completed-at": "2026-11-21T12:00:00Z",
            "security.scan.critical": "0",
            "criticality": "high",
            "tenant": "acme",
        },
    },
    "caller": {"subject": "svc", "tenant": "acme"},
    "now": "2026-11-22T08:00:00Z",
    "access": {"eu-west-1": 10},
}


def _with(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_BASE)
    *parents, last = path.split("/")
    node = doc
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return doc


# One fact changed each, on what the policy reads: each reaches the enriched input.
MUTANTS = [
    pytest.param(_with("image/labels/security.scan.status", "failed"), id="scan failed"),
    pytest.param(_with("image/labels/security.scan.critical", "1"), id="one critical finding"),
    pytest.param(_with("image/labels/tenant", "globex"), id="image of another tenant"),
    pytest.param(_with("caller/tenant", "globex"), id="caller of another tenant"),
    pytest.param(_with("image/labels/compliance-required", "true"), id="compliance required"),
    pytest.param(_with("image/tag", "dev-1.0"), id="another environment"),
    pytest.param(_with("image/digest", "sha256:" + "cd" * 32), id="another digest"),
    pytest.param(_with("registry_health", {"prod-eu": False}), id="a registry down"),
    pytest.param(_with("access", {"eu-west-1": 10, "us-east-1": 900}), id="pull history"),
    pytest.param(_with("image/size_bytes", 1000001), id="one byte larger"),
    pytest.param(_with("event", "reconcile"), id="another event"),
    pytest.param(_with("image/present_at", ["prod-us"]), id="a copy observed"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    async with running_sidecar(cached_config(tmp_path_factory.mktemp("cache-attack"))) as running:
        yield running


async def _input_of(sidecar: RunningSidecar, decision_id: str) -> dict[str, Any]:
    explained = await sidecar.stub.Explain(pb.ExplainRequest(decision_id=decision_id))
    doc: dict[str, Any] = orjson.loads(explained.input_json)
    doc.pop("now")
    return doc


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("mutant", MUTANTS)
async def test_one_fact_apart_never_shares_an_entry(
    sidecar: RunningSidecar, mutant: dict[str, Any]
) -> None:
    base = await sidecar.stub.Decide(proto_request(_BASE))
    hits = lookups(sidecar, "hit")
    assert (await sidecar.stub.Decide(proto_request(_BASE))).decision == base.decision
    assert lookups(sidecar, "hit") == hits + 1, "the base request is warm in the cache"

    hits = lookups(sidecar, "hit")
    other = await sidecar.stub.Decide(proto_request(mutant))
    assert lookups(sidecar, "hit") == hits, "a request one fact apart was answered cached"
    assert await _input_of(sidecar, other.decision_id) != await _input_of(
        sidecar, base.decision_id
    ), "the changed fact must reach the policy input (else this case proves nothing)"
    recorded, now = await opa_says_now(sidecar, other.decision_id)
    assert recorded == now

    # Still serving, and the base entry is untouched by the attempt.
    again = await sidecar.stub.Decide(proto_request(_BASE))
    assert again.decision == base.decision

"""The retention query (DESIGN §3.4) on the real OPA against a reference model written in Python.

Arbitrary tenants, usage and copies (ties in time, never-pulled copies, missing dates, several
registries and repositories) go to ``data.replication.retention`` of the real bundle; the answer
must be exactly what the contract's text computes: candidates older than ``older_than_days`` and
beyond the ``keep_last`` newest per registry and repository, least recently pulled first, then
oldest, then registry/repository/tag/digest, deleted until the usage is at or below the limit.
Off-schema inputs must still answer the three fields or fail as a clear policy error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings, target
from hypothesis import strategies as st

from sidecar.app.policy import PolicyRuntime, policy_runtime
from sidecar.config import load_config
from sidecar.errors import PolicyError
from sidecar.policy.opa import OpaEngine
from tests.support.fuzz import CASES_CONFIG, examples, json_values
from tests.support.sidecar import isolated_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

NOW = datetime(2026, 11, 28, tzinfo=UTC)
# tests/cases/data: acme keeps 5 copies younger than 14 days; others get the bundle defaults.
SETTINGS = {"acme": (5, 14)}
DEFAULTS = (10, 30)
_MAX_NS = 9223372036854775807


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# Few distinct instants, so ties in created_at and last_pulled_at are common.
_instants = st.integers(0, 60).map(lambda days: _stamp(NOW - timedelta(days=days * 3)))
_image = st.fixed_dictionaries(
    {
        # Two registries and two repositories: groups big enough to pass keep_last.
        "registry": st.sampled_from(["prod-us", "prod-us", "prod-us", "prod-eu"]),
        "repository": st.sampled_from(["acme/web", "acme/web", "acme/api"]),
        "tag": st.sampled_from(["v1", "v2", "v3", "latest", "prod-1"]),
        "digest": st.sampled_from(["sha256:01", "sha256:02", "sha256:03"]),
        # Mostly dated: an undated copy is never a candidate.
        "created_at": st.one_of(st.none(), _instants, _instants, _instants),
        "size_bytes": st.integers(0, 1000),
        "pulls": st.integers(0, 50),
        "last_pulled_at": st.none() | _instants,
    }
)


@st.composite
def _queries(draw: st.DrawFn) -> dict[str, Any]:
    """A tenant's copies with usage near their total, so the limit cuts somewhere inside them."""
    images = draw(st.lists(_image, min_size=draw(st.sampled_from([0, 8, 16])), max_size=40))
    used = sum(image["size_bytes"] for image in images) + draw(st.integers(0, 500))
    tenant = {
        "id": draw(st.sampled_from(["acme", "acme", "globex", "initech"])),
        "storage_used_bytes": used,
        "storage_limit_bytes": draw(st.integers(0, used + 100)),
    }
    return {"now": _stamp(NOW), "tenant": tenant, "images": images}


def _ns(text: str) -> int:
    moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000


def _age(image: dict[str, Any]) -> int:
    """created_at in ns; a copy without one counts as the newest."""
    return _ns(image["created_at"]) if image["created_at"] else _MAX_NS


def _pulled(image: dict[str, Any]) -> int:
    """last_pulled_at in ns; never pulled sorts first."""
    return _ns(image["last_pulled_at"]) if image["last_pulled_at"] else 0


def expected(query: dict[str, Any]) -> dict[str, Any]:
    """DESIGN §3.4 retention, written straight from its text (docs/policy.md for the details)."""
    tenant, images = query["tenant"], query["images"]
    used, limit = tenant["storage_used_bytes"], tenant["storage_limit_bytes"]
    if limit <= 0 or used <= limit:
        return {"delete": [], "bytes_freed": 0, "reasons": []}
    keep_last, days = SETTINGS.get(tenant["id"], DEFAULTS)
    cutoff = _ns(query["now"]) - days * 86_400 * 1_000_000_000
    newest = sorted(
        range(len(images)),
        key=lambda i: (
            images[i]["registry"], images[i]["repository"],
            -_age(images[i]),
            images[i]["tag"], images[i]["digest"], i,
        ),
    )  # fmt: skip
    rank: dict[int, int] = {}
    seen: dict[tuple[str, str], int] = {}
    for i in newest:
        group = (images[i]["registry"], images[i]["repository"])
        rank[i] = seen.get(group, 0)
        seen[group] = rank[i] + 1
    candidates = [
        i
        for i, image in enumerate(images)
        if rank[i] >= keep_last and image["created_at"] and _ns(image["created_at"]) < cutoff
    ]
    candidates.sort(
        key=lambda i: (
            _pulled(images[i]), _age(images[i]),
            images[i]["registry"], images[i]["repository"], images[i]["tag"],
            images[i]["digest"], i,
        )
    )  # fmt: skip
    deleted, freed = [], 0
    for i in candidates:
        if used - freed <= limit:
            break
        deleted.append(i)
        freed += images[i]["size_bytes"]
    codes = ["QUOTA_EXCEEDED"] + (["RETENTION_EXHAUSTED"] if used - freed > limit else [])
    keys = ("registry", "repository", "tag", "digest")
    return {
        "delete": [
            {**{k: images[i][k] for k in keys}, "reason": "QUOTA_EXCEEDED"} for i in deleted
        ],
        "bytes_freed": freed,
        "reasons": codes,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[OpaEngine]:
    """The retention query on a managed OPA with the cases bundle (its tenant settings)."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("fuzz-retention"))
    opa = dataclasses.replace(config.policy.opa, timeout_ms=20_000)
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, opa=opa))
    runtime: PolicyRuntime
    async with policy_runtime(config) as runtime:
        query = OpaEngine(
            runtime.url, timeout_s=20, path="replication/retention", token=runtime.token
        )
        try:
            yield query
        finally:
            await query.close()


@settings(max_examples=examples(80))
@given(query=_queries())
async def test_the_answer_is_what_the_contract_computes(
    engine: OpaEngine, query: dict[str, Any]
) -> None:
    want = expected(query)
    target(float(len(want["delete"])), label="copies deleted")  # steer towards real cuts
    answer = dict((await engine.evaluate(query)).result)
    answer["reasons"] = [r["code"] for r in answer["reasons"]]
    assert answer == want


@st.composite
def _broken(draw: st.DrawFn) -> Any:
    query = draw(_queries())
    where = draw(st.sampled_from(["", "tenant", "image"]))
    holder: Any = query
    if where == "tenant":
        holder = query["tenant"]
    elif where == "image" and query["images"]:
        holder = query["images"][0]
    holder[draw(st.sampled_from(sorted(holder)))] = draw(json_values)
    return query


@settings(max_examples=examples(40))
@given(query=_broken())
async def test_off_schema_inputs_answer_three_fields_or_a_clear_error(
    engine: OpaEngine, query: Any
) -> None:
    try:
        answer = (await engine.evaluate(query)).result
    except PolicyError as exc:
        assert "OPA" in exc.message or "decision" in exc.message, exc.message
        return
    assert sorted(answer) == ["bytes_freed", "delete", "reasons"]
    assert isinstance(answer["delete"], list) and isinstance(answer["reasons"], list)

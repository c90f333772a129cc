"""Schema-shaped but arbitrary DESIGN §3.1 inputs on the real OPA with the real bundle.

This is the ``policy-sidecar decide --policy-input`` path (the policy runtime's engine, no
enrichment): every answer must be a decision that keeps the §3.2 contract — each non-source
registry in exactly one of routes/denied/deferred, ranks 1..n, ``allow: false`` → no routes — or
a PolicyError that says what failed. Registry names, tags, labels and tenants mix the names the
bundle data refers to with arbitrary Unicode, so rules, legacy rules and tenants all fire.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.app.policy import PolicyRuntime, policy_runtime
from sidecar.config import load_config
from sidecar.errors import PolicyError
from tests.support.fuzz import CASES_CONFIG, contract_violations, examples, json_values, nasty_text
from tests.support.sidecar import isolated_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Names the cases bundle data (legacy rules, explicit rules, tenants) and the policy talk about.
KNOWN_REGISTRIES = (
    "ci", "prod-eu", "prod-eu-dr", "prod-us", "prod-ap", "dev-us", "dev-eu", "sandbox", "acme-prod",
)  # fmt: skip
KNOWN_TENANTS = ("acme", "globex")
ENVIRONMENTS = ("prod", "dev", "sandbox", "ci", "staging", "")
LABEL_KEYS = (
    "security.scan.status", "security.scan.completed-at", "security.scan.critical",
    "security.scan.high", "compliance-required", "criticality", "tenant", "team",
    "contains-secrets",
)  # fmt: skip
LABEL_VALUES = (
    "passed",
    "failed",
    "true",
    "false",
    "critical",
    "high",
    "normal",
    "low",
    "web",
    "0",
)


def _text(*known: str) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(known), nasty_text) if known else nasty_text


_times = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ"))
_counts = st.integers(min_value=0, max_value=2**53)
_scan = st.none() | st.fixed_dictionaries(
    {
        "status": st.sampled_from(["passed", "failed"]),
        "completed_at": _times,
        "critical": st.integers(0, 5),
        "high": st.integers(0, 5),
        "source": st.sampled_from(["label", "ecr", "attestation"]),
    }
)


@st.composite
def policy_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """A DESIGN §3.1 input: right types everywhere, arbitrary values inside them."""
    names = draw(st.lists(_text(*KNOWN_REGISTRIES), min_size=1, max_size=7, unique=True))
    registries = [
        {
            "name": name,
            "region": draw(_text("us-east-1", "eu-west-1", "eu-central-1")),
            "environment": draw(_text(*ENVIRONMENTS)),
            "gdpr": draw(st.booleans()),
            "role": draw(st.sampled_from(["primary", "secondary"])),
            "backs": draw(st.none() | st.sampled_from(names) | nasty_text),
            "healthy": draw(st.booleans()),
            "tenants": draw(st.lists(_text(*KNOWN_TENANTS), max_size=2)),
            "egress_cost_per_gb": draw(st.floats(0, 10, allow_nan=False)),
        }
        for name in names
    ]
    image = {
        "registry": draw(st.sampled_from(names) | _text(*KNOWN_REGISTRIES)),
        "repository": draw(_text("team/app", "acme/web", "legacy/tool", "apps/a/b", "keep/x")),
        "tag": draw(_text("prod-1.0", "prod-hotfix-2", "dev-3", "v1", "release-1", "latest")),
        "digest": draw(st.sampled_from(["", "sha256:" + "a" * 64])),
        "labels": draw(st.dictionaries(_text(*LABEL_KEYS), _text(*LABEL_VALUES), max_size=5)),
        "annotations": draw(st.dictionaries(nasty_text, nasty_text, max_size=3)),
        "created_at": draw(st.none() | _times),
        "size_bytes": draw(_counts),
        "platforms": draw(st.lists(_text("linux/amd64", "linux/arm64"), max_size=3)),
        "scan": draw(_scan),
        "tenant": draw(st.none() | _text(*KNOWN_TENANTS)),
        "present_at": draw(st.lists(st.sampled_from(names) | _text(*KNOWN_REGISTRIES), max_size=4)),
    }
    usage = st.fixed_dictionaries(
        {"id": _text(*KNOWN_TENANTS), "storage_used_bytes": _counts, "storage_limit_bytes": _counts}
    )
    return {
        "now": draw(_times),
        "event": draw(st.sampled_from(["push", "reconcile", "failover", "manual"])),
        "image": image,
        "registries": registries,
        "access": draw(st.dictionaries(_text("us-east-1", "eu-west-1"), _counts, max_size=3)),
        "tenant": draw(st.none() | usage),
        "caller": {
            "subject": draw(nasty_text),
            "tenant": draw(st.none() | _text(*KNOWN_TENANTS)),
            "roles": draw(st.lists(nasty_text, max_size=2)),
        },
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def runtime(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PolicyRuntime]:
    """The policy runtime ``decide --policy-input`` uses: a managed OPA on the local bundle."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path_factory.mktemp("fuzz-policy"))
    # Generous: big inputs on a loaded CI machine; the property is about answers, not speed.
    opa = dataclasses.replace(config.policy.opa, timeout_ms=20_000)
    config = dataclasses.replace(config, policy=dataclasses.replace(config.policy, opa=opa))
    async with policy_runtime(config) as running:
        yield running


@settings(max_examples=examples(120))
@given(doc=policy_inputs())
async def test_every_answer_keeps_the_decision_contract(
    runtime: PolicyRuntime, doc: dict[str, Any]
) -> None:
    try:
        answer = await runtime.engine.evaluate(doc)
    except PolicyError as exc:
        pytest.fail(f"schema-shaped input failed to evaluate: {exc.message}")
    names = [r["name"] for r in doc["registries"]]
    image = doc["image"]
    assert contract_violations(answer.result, names, image["registry"], image["present_at"]) == []


@st.composite
def broken_inputs(draw: st.DrawFn) -> dict[str, Any]:
    """A schema-shaped input with one to three fields (any depth) replaced by arbitrary JSON."""
    doc = draw(policy_inputs())
    for _ in range(draw(st.integers(1, 3))):
        holder: Any = doc
        path = draw(st.sampled_from(["", "image", "caller", "registries"]))
        if path == "registries" and doc["registries"] and isinstance(doc["registries"], list):
            holder = doc["registries"][0]
        elif path in ("image", "caller") and isinstance(doc[path], dict):
            holder = doc[path]
        if isinstance(holder, dict) and holder:
            holder[draw(st.sampled_from(sorted(holder)))] = draw(json_values)
    return doc


@settings(max_examples=examples(60))
@given(doc=broken_inputs())
async def test_off_schema_inputs_get_a_decision_or_a_clear_policy_error(
    runtime: PolicyRuntime, doc: dict[str, Any]
) -> None:
    try:
        answer = await runtime.engine.evaluate(doc)
    except PolicyError as exc:
        assert "OPA" in exc.message or "decision" in exc.message, exc.message
        return
    result = answer.result
    assert isinstance(result.get("allow"), bool), result
    assert isinstance(result.get("routes"), list) and isinstance(result.get("denied"), list)

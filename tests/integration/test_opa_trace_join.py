"""One decision, one trace: the sidecar's spans and the managed OPA's own, found in a real Jaeger.

The caller sends a ``traceparent``; the sidecar continues it, passes it to OPA on the query, and
OPA (its ``distributed_tracing`` pointed at the same Jaeger) exports its server span under the
sidecar's ``opa.query`` span. With ``policy.opa.decision_logs`` OPA's console decision log entry
comes back through the sidecar's log, joined to the sidecar's ``decision`` line by OPA's decision
id — and it never carries the input (a masked customer id stays out of the logs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.telemetry.names import ATTR_DECISION_ID, ATTR_OPA_DECISION_ID, SPAN_OPA_QUERY
from sidecar.testing import CapturedLogs
from tests.support.jaeger import JaegerServer, running_jaeger
from tests.support.sensitive import ALLOWED, assert_no_secret, customer_request, sensitive_config
from tests.support.sidecar import running_sidecar

pytestmark = pytest.mark.integration

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
SERVICE = "sidecar-trace-join"


@pytest.fixture
async def jaeger(tmp_path: Path) -> AsyncIterator[JaegerServer]:
    async with running_jaeger(tmp_path) as server:
        yield server


async def test_a_decision_has_the_sidecar_and_opa_spans_in_one_trace_and_joined_logs(
    jaeger: JaegerServer, tmp_path: Path
) -> None:
    loaded = load_config(sensitive_config(tmp_path / "work"))
    policy = loaded.policy
    config = dataclasses.replace(
        loaded,
        policy=dataclasses.replace(
            policy,
            opa=dataclasses.replace(policy.opa, decision_logs=True),
            telemetry=dataclasses.replace(
                policy.telemetry, otlp_endpoint=jaeger.otlp_grpc_endpoint, service_name=SERVICE
            ),
        ),
    )
    parent = (("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"),)
    with CapturedLogs(level="info") as logs:
        async with running_sidecar(config) as sidecar:
            answer = await sidecar.stub.Decide(
                customer_request(ALLOWED), metadata=parent, timeout=30
            )
            assert answer.trace_id == CALLER_TRACE and not answer.degraded
            # OPA's spans are exported in batches: wait for both services' spans.
            found = await jaeger.find_trace(CALLER_TRACE, timeout_s=60, min_spans=5)
            services = {found.service_of(s) for s in found.spans}
            while f"{SERVICE}-opa" not in services:
                found = await jaeger.find_trace(
                    CALLER_TRACE, timeout_s=60, min_spans=len(found.spans) + 1
                )
                services = {found.service_of(s) for s in found.spans}

    assert {SERVICE, f"{SERVICE}-opa"} <= services
    query = found.span(SPAN_OPA_QUERY)
    opa_id = found.tags(query)[ATTR_OPA_DECISION_ID]
    # Semantic-convention names beside ours: stock HTTP-client views understand the query.
    semconv = found.tags(query)
    assert semconv["server.address"] == "127.0.0.1" and semconv["http.request.method"] == "POST"
    assert int(semconv["server.port"]) > 0
    opa_spans = [s for s in found.spans if found.service_of(s) == f"{SERVICE}-opa"]
    # OPA's server span is a child of the sidecar's opa.query span: the traceparent was passed.
    assert any(found.parent_id(s) == query["spanID"] for s in opa_spans), [
        (s["operationName"], found.parent_id(s)) for s in opa_spans
    ]

    (ours,) = logs.find("decision", decision_id=answer.decision_id)
    (theirs,) = logs.find("opa decision", opa_decision_id=opa_id)
    assert ours["opa_decision_id"] == opa_id == str(found.tags(query)[ATTR_OPA_DECISION_ID])
    assert theirs["trace_id"] == CALLER_TRACE and theirs["path"] == "replication/decision"
    assert theirs["timer_rego_query_eval_ns"] > 0
    assert found.tags(found.span("policy.decide"))[ATTR_DECISION_ID] == answer.decision_id
    # OPA's entry holds the input (the customer id); what the sidecar logs of it does not.
    assert "input" not in theirs and "result" not in theirs
    assert_no_secret("the sidecar's log", logs.events)

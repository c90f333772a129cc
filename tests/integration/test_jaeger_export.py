"""Traces reach a real Jaeger over OTLP/gRPC and are found by trace id through its query API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.context import Context

from sidecar.telemetry import Telemetry, extract_context, span_id_hex, trace_id_hex
from sidecar.telemetry.names import (
    ATTR_BUNDLE_REVISION,
    ATTR_DECISION_ID,
    ATTR_OPA_EVAL_NS,
    ATTR_OPA_URL,
    ATTR_POLICY_ALLOW,
    ATTR_ROUTE_COUNT,
    SPAN_DECIDE,
    SPAN_ENRICH,
    SPAN_OPA_QUERY,
)
from tests.support.jaeger import JaegerServer, running_jaeger

pytestmark = pytest.mark.integration

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"


@pytest.fixture
async def jaeger_server(tmp_path: Path) -> AsyncIterator[JaegerServer]:
    async with running_jaeger(tmp_path) as server:
        yield server


def _emit_decision(telemetry: Telemetry, parent: Context | None = None) -> tuple[str, str]:
    tracer = telemetry.tracer
    with tracer.start_as_current_span(
        SPAN_DECIDE, context=parent, kind=trace.SpanKind.SERVER
    ) as span:
        span.set_attribute(ATTR_DECISION_ID, "dec-jaeger-1")
        span.set_attribute(ATTR_BUNDLE_REVISION, "rev-42")
        span.set_attribute(ATTR_POLICY_ALLOW, True)
        span.set_attribute(ATTR_ROUTE_COUNT, 2)
        with tracer.start_as_current_span(SPAN_ENRICH):
            pass
        with tracer.start_as_current_span(SPAN_OPA_QUERY, kind=trace.SpanKind.CLIENT) as query:
            query.set_attribute(ATTR_OPA_URL, "http://127.0.0.1:8181")
            query.set_attribute(ATTR_OPA_EVAL_NS, 31337)
        return trace_id_hex(span), span_id_hex(span)


async def test_decision_trace_is_exported_to_jaeger(jaeger_server: JaegerServer) -> None:
    telemetry = Telemetry(
        "policy-sidecar-it", otlp_endpoint=jaeger_server.otlp_grpc_endpoint, service_version="1.2.3"
    )
    try:
        trace_id, decide_span_id = _emit_decision(telemetry)
        assert telemetry.force_flush(10_000)
    finally:
        telemetry.shutdown()

    found = await jaeger_server.find_trace(trace_id, timeout_s=20, min_spans=3)

    decide = found.span(SPAN_DECIDE)
    query = found.span(SPAN_OPA_QUERY)
    enrich = found.span(SPAN_ENRICH)
    assert decide["spanID"] == decide_span_id
    assert found.parent_id(decide) is None
    assert found.parent_id(query) == decide_span_id
    assert found.parent_id(enrich) == decide_span_id
    assert found.service_of(decide) == "policy-sidecar-it"

    decide_tags = found.tags(decide)
    assert decide_tags[ATTR_DECISION_ID] == "dec-jaeger-1"
    assert decide_tags[ATTR_BUNDLE_REVISION] == "rev-42"
    assert decide_tags[ATTR_POLICY_ALLOW] is True
    assert decide_tags[ATTR_ROUTE_COUNT] == 2
    assert decide_tags["span.kind"] == "server"
    query_tags = found.tags(query)
    assert query_tags[ATTR_OPA_EVAL_NS] == 31337
    assert query_tags[ATTR_OPA_URL] == "http://127.0.0.1:8181"


async def test_continued_trace_keeps_the_callers_ids_in_jaeger(
    jaeger_server: JaegerServer,
) -> None:
    # A bare host:port endpoint (no scheme) must also be spoken to in plaintext.
    endpoint = jaeger_server.otlp_grpc_endpoint.removeprefix("http://")
    telemetry = Telemetry("policy-sidecar-it", otlp_endpoint=endpoint)
    try:
        parent = extract_context([("traceparent", f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")])
        trace_id, _ = _emit_decision(telemetry, parent)
        assert telemetry.force_flush(10_000)
    finally:
        telemetry.shutdown()

    assert trace_id == CALLER_TRACE
    found = await jaeger_server.find_trace(CALLER_TRACE, timeout_s=20, min_spans=3)
    decide = found.span(SPAN_DECIDE)
    # The caller's own span was never exported here, but the reference to it is kept.
    assert found.parent_id(decide) == CALLER_SPAN

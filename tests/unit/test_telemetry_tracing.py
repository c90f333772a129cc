"""Tracing: span tree and attributes, W3C trace-context continuation, per-instance isolation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace

from sidecar.errors import ConfigError
from sidecar.telemetry import Telemetry, extract_context, inject_metadata, span_id_hex, trace_id_hex
from sidecar.telemetry._tracing import otlp_target
from sidecar.telemetry.names import (
    ATTR_DECISION_ID,
    ATTR_OPA_EVAL_NS,
    ATTR_POLICY_ALLOW,
    SPAN_DECIDE,
    SPAN_ENRICH,
    SPAN_OPA_QUERY,
)
from sidecar.testing import InMemorySpans

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"


@pytest.fixture
def spans() -> InMemorySpans:
    return InMemorySpans()


@pytest.fixture
def telemetry(spans: InMemorySpans) -> Iterator[Telemetry]:
    tel = Telemetry("policy-sidecar-test", span_exporter=spans, service_version="9.9.9")
    yield tel
    tel.shutdown()


def _decide(telemetry: Telemetry, metadata: list[tuple[str, str]]) -> None:
    parent = extract_context(metadata)
    tracer = telemetry.tracer
    with tracer.start_as_current_span(SPAN_DECIDE, context=parent, kind=trace.SpanKind.SERVER):
        with tracer.start_as_current_span(SPAN_ENRICH):
            pass
        with tracer.start_as_current_span(SPAN_OPA_QUERY, kind=trace.SpanKind.CLIENT) as q:
            q.set_attribute(ATTR_OPA_EVAL_NS, 1234)


def test_decide_span_has_children_and_attributes(
    telemetry: Telemetry, spans: InMemorySpans
) -> None:
    with telemetry.tracer.start_as_current_span(SPAN_DECIDE) as span:
        span.set_attribute(ATTR_DECISION_ID, "d-1")
        span.set_attribute(ATTR_POLICY_ALLOW, True)
        with telemetry.tracer.start_as_current_span(SPAN_OPA_QUERY) as child:
            child.set_attribute(ATTR_OPA_EVAL_NS, 42)
        expected_trace = trace_id_hex(span)

    decide = spans.one(SPAN_DECIDE)
    query = spans.one(SPAN_OPA_QUERY)
    assert decide.attributes == {ATTR_DECISION_ID: "d-1", ATTR_POLICY_ALLOW: True}
    assert query.attributes == {ATTR_OPA_EVAL_NS: 42}
    assert spans.children_of(decide) == [query]
    assert decide.parent is None
    assert format(decide.context.trace_id, "032x") == expected_trace
    assert decide.resource.attributes["service.name"] == "policy-sidecar-test"
    assert decide.resource.attributes["service.version"] == "9.9.9"


def test_incoming_traceparent_is_continued(telemetry: Telemetry, spans: InMemorySpans) -> None:
    _decide(telemetry, [("user-agent", "grpc"), ("traceparent", TRACEPARENT)])

    decide = spans.one(SPAN_DECIDE)
    assert format(decide.context.trace_id, "032x") == TRACE_ID
    assert decide.parent is not None
    assert format(decide.parent.span_id, "016x") == PARENT_ID
    assert decide.parent.is_remote
    # Children stay in the caller's trace too.
    assert {format(s.context.trace_id, "032x") for s in spans.spans} == {TRACE_ID}


def test_tracestate_is_carried_into_the_span(telemetry: Telemetry, spans: InMemorySpans) -> None:
    _decide(telemetry, [("traceparent", TRACEPARENT), ("tracestate", "vendor=abc,other=1")])

    decide = spans.one(SPAN_DECIDE)
    assert decide.context.trace_state.get("vendor") == "abc"


@pytest.mark.parametrize(
    "metadata",
    [
        [],
        [("traceparent", "garbage")],
        [("traceparent", f"00-{'0' * 32}-{PARENT_ID}-01")],  # all-zero trace id is invalid
        [("traceparent", f"00-{TRACE_ID}-{'0' * 16}-01")],  # all-zero parent id is invalid
        [("traceparent", f"ff-{TRACE_ID}-{PARENT_ID}-01")],  # version ff is forbidden
        [("tracestate", "vendor=abc")],  # tracestate alone means nothing
    ],
    ids=["absent", "garbage", "zero-trace", "zero-parent", "bad-version", "state-only"],
)
def test_missing_or_malformed_traceparent_starts_a_new_trace(
    telemetry: Telemetry, spans: InMemorySpans, metadata: list[tuple[str, str]]
) -> None:
    assert extract_context(metadata) == {}

    _decide(telemetry, metadata)
    decide = spans.one(SPAN_DECIDE)
    assert decide.parent is None
    assert format(decide.context.trace_id, "032x") != TRACE_ID


def test_malformed_traceparent_does_not_join_the_current_span(
    telemetry: Telemetry, spans: InMemorySpans
) -> None:
    with telemetry.tracer.start_as_current_span("unrelated"):
        _decide(telemetry, [("traceparent", "00-nothex-nothex-01")])
    decide = spans.one(SPAN_DECIDE)
    assert decide.parent is None


def test_binary_metadata_is_ignored(telemetry: Telemetry, spans: InMemorySpans) -> None:
    ctx = extract_context([("traceparent", TRACEPARENT.encode()), ("x-bin", b"\x00")])
    assert ctx == {}


def test_inject_metadata_round_trips(telemetry: Telemetry, spans: InMemorySpans) -> None:
    with telemetry.tracer.start_as_current_span("client") as client:
        metadata = inject_metadata()
        client_trace, client_span = trace_id_hex(client), span_id_hex(client)

    version, trace_id, span_id, flags = dict(metadata)["traceparent"].split("-")
    assert (version, trace_id, span_id) == ("00", client_trace, client_span)
    assert int(flags, 16) & 0x01  # sampled
    _decide(telemetry, metadata)
    decide = spans.one(SPAN_DECIDE)
    assert decide.parent is not None
    assert format(decide.parent.span_id, "016x") == client_span


def test_inject_metadata_without_a_span_is_empty() -> None:
    assert inject_metadata() == []


def test_two_instances_do_not_share_spans_or_the_global_provider() -> None:
    first, second = InMemorySpans(), InMemorySpans()
    tel_a = Telemetry("a", span_exporter=first)
    tel_b = Telemetry("b", span_exporter=second)
    try:
        with tel_a.tracer.start_as_current_span("only-a"):
            pass
        assert [s.name for s in first.spans] == ["only-a"]
        assert second.spans == ()
        assert trace.get_tracer_provider() is not tel_a.provider
    finally:
        tel_a.shutdown()
        tel_b.shutdown()


def test_ids_of_a_non_recording_span_are_empty() -> None:
    assert trace_id_hex(trace.INVALID_SPAN) == ""
    assert span_id_hex(trace.INVALID_SPAN) == ""


def test_shutdown_twice_is_harmless(spans: InMemorySpans) -> None:
    tel = Telemetry("x", span_exporter=spans)
    tel.shutdown()
    tel.shutdown()
    with tel.tracer.start_as_current_span("after"):
        pass
    assert spans.spans == ()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("127.0.0.1:4317", ("127.0.0.1:4317", True)),
        ("http://collector:4317", ("collector:4317", True)),
        ("https://collector.example:443/", ("collector.example:443", False)),
    ],
)
def test_otlp_endpoint_forms(endpoint: str, expected: tuple[str, bool]) -> None:
    assert otlp_target(endpoint) == expected


def test_otlp_endpoint_with_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="otlp_endpoint"):
        Telemetry("x", otlp_endpoint="ftp://collector:4317")

"""The standard OTEL_* environment variables steer trace export, checked against a real Jaeger."""

from __future__ import annotations

import aiohttp
import pytest
from opentelemetry import trace

from sidecar.errors import ConfigError
from sidecar.telemetry import Telemetry, trace_id_hex
from tests.support.jaeger import JaegerServer

pytestmark = pytest.mark.integration

_OTEL_VARS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
)


@pytest.fixture(autouse=True)
def _clean_otel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test from no OTEL_* setting (the runner's own environment must not leak in)."""
    for name in _OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


def _one_span(telemetry: Telemetry, name: str) -> str:
    with telemetry.tracer.start_as_current_span(name, kind=trace.SpanKind.SERVER) as span:
        trace_id = trace_id_hex(span)
    assert telemetry.force_flush(10_000)
    return trace_id


async def test_the_otlp_endpoint_and_service_name_come_from_the_environment(
    jaeger: JaegerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No otlp_endpoint in the config: the standard variables alone make the sidecar export.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", jaeger.otlp_grpc_endpoint)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "sidecar-eu-1")
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging")
    telemetry = Telemetry("policy-sidecar")
    try:
        trace_id = _one_span(telemetry, "env.exported")
    finally:
        telemetry.shutdown()
    found = await jaeger.find_trace(trace_id, timeout_s=20)
    span = found.span("env.exported")
    assert found.service_of(span) == "sidecar-eu-1"
    process = found.raw["processes"][span["processID"]]
    tags = {t["key"]: t["value"] for t in process.get("tags", [])}
    assert tags.get("deployment.environment") == "staging"


async def test_traces_exporter_none_exports_nothing_even_with_an_endpoint_configured(
    jaeger: JaegerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Spans are still made (decisions keep their trace ids in logs and answers), not shipped.
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    off = Telemetry("sidecar-disabled", otlp_endpoint=jaeger.otlp_grpc_endpoint)
    try:
        assert _one_span(off, "env.disabled")
    finally:
        off.shutdown()
    monkeypatch.delenv("OTEL_TRACES_EXPORTER")
    on = Telemetry("sidecar-enabled", otlp_endpoint=jaeger.otlp_grpc_endpoint)
    try:
        heard = _one_span(on, "env.enabled")
    finally:
        on.shutdown()
    # The second span arrives (Jaeger was listening all along); the first service never did.
    await jaeger.find_trace(heard, timeout_s=20)
    async with aiohttp.ClientSession() as http, http.get(f"{jaeger.query_url}/api/services") as r:
        services = (await r.json())["data"]
    assert "sidecar-enabled" in services
    assert "sidecar-disabled" not in services


@pytest.mark.parametrize(
    ("name", "value"),
    [("OTEL_TRACES_EXPORTER", "zipkin"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
)
def test_an_exporter_it_cannot_honour_is_a_clear_error(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        Telemetry("policy-sidecar", otlp_endpoint="http://127.0.0.1:4317")

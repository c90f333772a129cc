"""Telemetry: the sidecar's own tracer provider (OTLP export) and Prometheus metrics, no globals.

The standard ``OTEL_*`` environment variables are honoured, config first where both say something:
``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn export off;
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` give the collector when
``policy.telemetry.otlp_endpoint`` is unset (the exporter then reads its other
``OTEL_EXPORTER_OTLP_*`` settings itself: headers, certificate, timeout, compression, insecure);
``OTEL_SERVICE_NAME`` and ``OTEL_RESOURCE_ATTRIBUTES`` shape the resource; ``OTEL_TRACES_SAMPLER``
and ``OTEL_BSP_*`` are read by the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry

from sidecar.errors import ConfigError
from sidecar.telemetry._metrics import Metrics
from sidecar.telemetry._tracing import otlp_target

__all__ = ["Telemetry", "trace_endpoint"]

_INSTRUMENTATION_SCOPE = "sidecar"
# An unreachable collector must not stall decisions or shutdown for long: export is async
# (BatchSpanProcessor) and each export attempt gives up after this many seconds.
_OTLP_TIMEOUT_S = 5.0


class Telemetry:
    """Owns one TracerProvider and one metrics registry; build one per process (or per test)."""

    def __init__(
        self,
        service_name: str,
        *,
        otlp_endpoint: str | None = None,
        span_exporter: SpanExporter | None = None,
        metrics_registry: CollectorRegistry | None = None,
        service_version: str = "",
    ) -> None:
        """Set up metrics and tracing: OTLP gRPC when an endpoint is given, plus ``span_exporter``.

        ``otlp_endpoint`` is ``host:port`` or ``http://host:port`` (plaintext) or ``https://…``
        (TLS). ``span_exporter`` gets every span synchronously as it ends, which is what tests want.
        """
        env = os.environ
        # OTEL_SERVICE_NAME (read by Resource.create) names the service over the config's value,
        # as the OpenTelemetry spec has it: the deployment knows which instance this is.
        attributes: dict[str, str] = (
            {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
        )
        if service_version:
            attributes[SERVICE_VERSION] = service_version
        # Our own provider, never the global one: two Telemetry objects (two sidecars in one test
        # process) must not see each other's spans, and set_tracer_provider only works once.
        self.provider = TracerProvider(resource=Resource.create(attributes))
        """The SDK tracer provider owned by this object."""
        exporter = _otlp_exporter(otlp_endpoint, env)
        if exporter is not None:
            self.provider.add_span_processor(BatchSpanProcessor(exporter))
        if span_exporter is not None:
            self.provider.add_span_processor(SimpleSpanProcessor(span_exporter))
        self.tracer: trace.Tracer = self.provider.get_tracer(
            _INSTRUMENTATION_SCOPE, service_version
        )
        """The tracer every sidecar span is started from."""
        self.metrics_registry = (
            metrics_registry if metrics_registry is not None else CollectorRegistry()
        )
        """The Prometheus registry MetricsServer serves."""
        self.metrics = Metrics(self.metrics_registry)
        """The sidecar's metric families (see Metrics)."""
        self._shut_down = False

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        """Export every finished span now; True when all exporters finished within the timeout."""
        return self.provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flush and stop every exporter; safe to call twice."""
        if self._shut_down:
            return
        self._shut_down = True
        self.provider.shutdown()


def trace_endpoint(endpoint: str | None, env: Mapping[str, str]) -> str | None:
    """Return where traces go — the config's endpoint, else ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``
    — or None when export is off (``OTEL_SDK_DISABLED``, ``OTEL_TRACES_EXPORTER=none``): what the
    managed OPA's own spans follow."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if "none" in {k.strip().lower() for k in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}:
        return None
    return (
        endpoint
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def _otlp_exporter(endpoint: str | None, env: Mapping[str, str]) -> SpanExporter | None:
    """The OTLP exporter the config or the ``OTEL_*`` environment asks for, or None (no export)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    kinds = {k.strip().lower() for k in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")}
    if "none" in kinds:
        return None
    if kinds - {"otlp", ""}:
        raise ConfigError(
            "OTEL_TRACES_EXPORTER", f"{env['OTEL_TRACES_EXPORTER']!r}: only otlp or none"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "grpc"
    )
    if protocol.strip().lower() != "grpc":
        raise ConfigError("OTEL_EXPORTER_OTLP_PROTOCOL", f"{protocol!r}: only grpc is supported")
    if endpoint:
        target, insecure = otlp_target(endpoint)
        return OTLPSpanExporter(endpoint=target, insecure=insecure, timeout=_OTLP_TIMEOUT_S)
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        # No argument: the exporter reads every OTEL_EXPORTER_OTLP_* setting the spec defines.
        return OTLPSpanExporter()
    return None

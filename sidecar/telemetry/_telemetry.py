"""Telemetry: the sidecar's own tracer provider (OTLP export) and Prometheus metrics, no globals."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from prometheus_client import CollectorRegistry

from sidecar.telemetry._metrics import Metrics
from sidecar.telemetry._tracing import otlp_target

__all__ = ["Telemetry"]

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
        attributes: dict[str, str] = {SERVICE_NAME: service_name}
        if service_version:
            attributes[SERVICE_VERSION] = service_version
        # Our own provider, never the global one: two Telemetry objects (two sidecars in one test
        # process) must not see each other's spans, and set_tracer_provider only works once.
        self.provider = TracerProvider(resource=Resource.create(attributes))
        """The SDK tracer provider owned by this object."""
        if otlp_endpoint:
            target, insecure = otlp_target(otlp_endpoint)
            exporter = OTLPSpanExporter(endpoint=target, insecure=insecure, timeout=_OTLP_TIMEOUT_S)
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

"""Telemetry of the sidecar: OpenTelemetry traces (OTLP), Prometheus metrics and JSON logs.

Span names and attribute keys are documented in :mod:`sidecar.telemetry.names`; wiring to
Jaeger and Prometheus in deploy/observability/README.md.
"""

from __future__ import annotations

from sidecar.telemetry._http import MetricsServer, Readiness
from sidecar.telemetry._http_client import (
    foreign_origin,
    http_client_tracing,
    untraced_unless_in_trace,
)
from sidecar.telemetry._logging import (
    LOG_FORMATS,
    LOG_LEVELS,
    LoggingSnapshot,
    LogStream,
    add_trace_context,
    configure_logging,
    decision_log_context,
    get_logger,
    snapshot_logging,
)
from sidecar.telemetry._metrics import (
    GRPC_TYPES,
    LATENCY_BUCKETS,
    METRIC_PREFIX,
    Metrics,
    Outcome,
)
from sidecar.telemetry._telemetry import Telemetry, trace_endpoint
from sidecar.telemetry._tracing import (
    extract_context,
    inject_metadata,
    otlp_target,
    request_parent,
    span_id_hex,
    trace_headers,
    trace_id_hex,
)

__all__ = [
    "GRPC_TYPES",
    "LATENCY_BUCKETS",
    "LOG_FORMATS",
    "LOG_LEVELS",
    "METRIC_PREFIX",
    "LogStream",
    "LoggingSnapshot",
    "Metrics",
    "MetricsServer",
    "Outcome",
    "Readiness",
    "Telemetry",
    "add_trace_context",
    "configure_logging",
    "decision_log_context",
    "extract_context",
    "foreign_origin",
    "get_logger",
    "http_client_tracing",
    "inject_metadata",
    "otlp_target",
    "request_parent",
    "snapshot_logging",
    "span_id_hex",
    "trace_endpoint",
    "trace_headers",
    "trace_id_hex",
    "untraced_unless_in_trace",
]

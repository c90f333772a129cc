"""W3C trace-context plumbing: continue a caller's trace from gRPC metadata, and the reverse."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from sidecar.errors import ConfigError

__all__ = [
    "extract_context",
    "inject_metadata",
    "otlp_target",
    "request_parent",
    "span_id_hex",
    "trace_headers",
    "trace_id_hex",
]

_TRACE_HEADERS = ("traceparent", "tracestate")


def extract_context(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context:
    """Return a Context that continues the caller's W3C trace context (empty if absent or bad).

    ``metadata`` is gRPC invocation metadata: (key, value) pairs with lowercase keys. The result
    is meant as the ``context=`` of the server span, so a missing or malformed header starts a new
    trace instead of silently joining whatever span happens to be current.
    """
    carrier: dict[str, str] = {}
    for key, value in metadata or ():
        # Binary (-bin) metadata arrives as bytes and is never trace context; the first of a
        # repeated header wins, as the W3C spec asks for traceparent.
        if key in _TRACE_HEADERS and isinstance(value, str) and key not in carrier:
            carrier[key] = value
    if "traceparent" not in carrier:
        return Context()
    # An explicit empty context: the propagator returns it unchanged when traceparent is invalid.
    return TraceContextTextMapPropagator().extract(carrier, context=Context())


def request_parent(metadata: Iterable[tuple[str, str | bytes]] | None) -> Context | None:
    """The parent of a request's spans: None (the current context) inside the gRPC server span
    OpenTelemetry's interceptor opened — it already continued the caller's trace — else the
    caller's W3C trace context from ``metadata`` (a server without the interceptor)."""
    if trace.get_current_span().get_span_context().is_valid:
        return None
    return extract_context(metadata)


def inject_metadata(context: Context | None = None) -> list[tuple[str, str]]:
    """Return gRPC metadata carrying ``context`` (default: the current one) as W3C trace context."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier, context=context)
    return sorted(carrier.items())


def trace_headers() -> dict[str, str]:
    """Return the current span's W3C trace context as HTTP headers ({} with no sampled span)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return {}  # tracing off, or no span: nothing to continue (and nothing to pay for)
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def trace_id_hex(span: trace.Span) -> str:
    """Return the span's trace id as 32 lowercase hex digits, or "" for an invalid (no-op) span."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else ""


def span_id_hex(span: trace.Span) -> str:
    """Return the span's id as 16 lowercase hex digits, or "" for an invalid (no-op) span."""
    ctx = span.get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else ""


def otlp_target(endpoint: str) -> tuple[str, bool]:
    """Split an OTLP gRPC endpoint into (host:port, insecure).

    ``https://`` means TLS; ``http://`` or a bare ``host:port`` means plaintext, which is what a
    collector next to the sidecar (or a test's Jaeger on loopback) speaks. Raises ConfigError for
    any other scheme.
    """
    if "://" not in endpoint:
        return endpoint.strip("/"), True
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError("otlp_endpoint", f"{endpoint!r} is not http(s)://host:port or host:port")
    return parts.netloc, parts.scheme == "http"

"""OpenTelemetry's aiohttp client instrumentation, bounded to the requests our traces may reach.

Every aiohttp session that talks to OPA or to a registry gets :func:`http_client_tracing`'s trace
configs: OpenTelemetry's own ``opentelemetry-instrumentation-aiohttp-client`` opens a standard HTTP
CLIENT span per request (``http.request.method``, ``url.full``, ``server.address``,
``http.response.status_code``) and injects the W3C ``traceparent`` of that span, so OPA's server
span (or a registry's) is its child. Three bounds of our own around it:

- a request made outside any trace (health probes, bundle polls) is not traced at all: each would
  otherwise start a one-span trace of its own every few seconds (:func:`untraced_unless_in_trace`);
- a request to another origin than the session's own (an upload ``Location`` on a blob store) is
  not traced, and a redirect to another origin drops the trace headers before it is followed, so a
  blob store learns nothing of our traces (:func:`foreign_origin`, the redirect guard);
- ``url.full`` is recorded without its query string: registry upload URLs carry state tokens and
  token realms carry scopes.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterator

import aiohttp
from opentelemetry import trace
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.aiohttp_client import create_trace_config
from opentelemetry.instrumentation.utils import suppress_http_instrumentation
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider
from yarl import URL

__all__ = ["foreign_origin", "http_client_tracing", "untraced_unless_in_trace"]

# W3C trace context plus OpenTelemetry's default baggage: what the instrumentation injects.
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


def http_client_tracing(
    tracer_provider: TracerProvider | None, *, origin: str | None = None
) -> list[aiohttp.TraceConfig]:
    """Return the trace configs for an aiohttp session whose own origin is ``origin``.

    ``tracer_provider`` None uses OpenTelemetry's global provider (a no-op unless the process set
    one): no span is recorded, but the caller's trace context still reaches the server.
    """
    configs = [
        create_trace_config(
            url_filter=_without_query,
            tracer_provider=tracer_provider,
            # The stable HTTP semantic conventions (url.full, http.response.status_code), as on
            # our own opa.query span; the function's default is the pre-1.0 names (http.url).
            # The enum lives in a private module but is create_trace_config's documented type.
            sem_conv_opt_in_mode=_StabilityMode.HTTP,
            # Our metrics are Prometheus families (sidecar.telemetry.Metrics); no OTel meter here.
            meter_provider=NoOpMeterProvider(),
        )
    ]
    if origin is not None:
        configs.append(_redirect_guard(URL(origin)))
    return configs


@contextlib.contextmanager
def untraced_unless_in_trace() -> Iterator[None]:
    """Suppress the HTTP client span (and its traceparent) when no span is current."""
    if trace.get_current_span().get_span_context().is_valid:
        yield
        return
    with suppress_http_instrumentation():
        yield


@contextlib.contextmanager
def foreign_origin(foreign: bool) -> Iterator[None]:
    """Suppress the HTTP client span when the request leaves the session's own origin."""
    if not foreign:
        yield
        return
    with suppress_http_instrumentation():
        yield


def _without_query(url: URL) -> str:
    """The URL recorded on the span: no query string, no credentials."""
    return str(url.with_query(None).with_fragment(None).with_user(None))


def _redirect_guard(own: URL) -> aiohttp.TraceConfig:
    """Drop the trace headers from a request that is about to be redirected off ``own``'s origin.

    aiohttp keeps one header mapping across the hops of a redirect (it drops only Authorization
    and cookies on an origin change), so what the instrumentation injected would follow.
    """
    config = aiohttp.TraceConfig()

    async def on_redirect(
        _session: aiohttp.ClientSession,
        _ctx: types.SimpleNamespace,
        params: aiohttp.TraceRequestRedirectParams,
    ) -> None:
        location = params.response.headers.get("Location", "")
        target = params.url.join(URL(location)) if location else params.url
        if target.origin() != own.origin():
            for name in _TRACE_HEADERS:
                params.headers.popall(name, None)

    config.on_request_redirect.append(on_redirect)
    return config

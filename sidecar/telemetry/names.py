"""Span names and attribute keys of the decision trace, shared by code that emits and reads them.

One decision produces this tree (all spans of one trace)::

    /freightliner.policy.v1.PolicyService/Decide   SERVER span of OpenTelemetry's gRPC
    │                        interceptor (rpc.* attributes; continues an incoming traceparent)
    └── policy.decide        one per decision (INTERNAL under it; SERVER when it is the root)
        ├── policy.enrich    building the policy input (registry facts, scan facts, usage)
        ├── opa.query        CLIENT span, the REST call to OPA (OPA's own spans below it)
        └── policy.fallback  only when OPA was unavailable and the fail mode answered

``policy.decide`` attributes:
    policy.decision_id (str), policy.bundle_revision (str), policy.allow (bool),
    policy.route_count / policy.denied_count / policy.deferred_count (int), policy.priority (int),
    policy.degraded (bool), policy.event (str), image.ref (str), caller.subject (str),
    error.code (str, an ``errors.ErrorCode`` value; only when the decision failed),
    policy.fail_mode (str; only on a degraded decision), policy.cached (bool; only when the
    decision cache answered: then there is no ``opa.query`` span).

``policy.fallback`` attributes:
    policy.fail_mode (str), policy.fallback.result (str: how the fail mode answered).

``opa.query`` attributes:
    opa.url (str), opa.eval_ns (int), opa.bundle_revision (str), opa.attempts (int),
    opa.decision_id (str; OPA's own id, only when OPA's decision logs are on); and the
    OpenTelemetry semantic-convention names server.address, server.port, http.request.method.

Registry requests made inside a trace (a copy's, an enrichment's) are standard HTTP CLIENT spans
(GET, HEAD, PUT, ...) of OpenTelemetry's aiohttp client instrumentation, at the registry's own
origin only; outside a trace, or at another origin (a blob store a registry redirects to), nothing
is recorded or sent (sidecar/telemetry/_http_client.py). The OPA query is not instrumented twice:
``opa.query`` already is that request's CLIENT span with the same semantic-convention attributes,
and a second span per decision measured 170-430 µs of CPU on the hot path (docs/benchmarks.md).

The names are a contract with dashboards and Jaeger searches: change them only together with
deploy/observability/README.md.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTR_BUNDLE_REVISION",
    "ATTR_CALLER_SUBJECT",
    "ATTR_DECISION_ID",
    "ATTR_DEFERRED_COUNT",
    "ATTR_DEGRADED",
    "ATTR_DENIED_COUNT",
    "ATTR_ERROR_CODE",
    "ATTR_EVENT",
    "ATTR_FAIL_MODE",
    "ATTR_FALLBACK_RESULT",
    "ATTR_IMAGE_REF",
    "ATTR_OPA_ATTEMPTS",
    "ATTR_OPA_BUNDLE_REVISION",
    "ATTR_OPA_DECISION_ID",
    "ATTR_OPA_EVAL_NS",
    "ATTR_OPA_URL",
    "ATTR_POLICY_ALLOW",
    "ATTR_PRIORITY",
    "ATTR_ROUTE_COUNT",
    "SPAN_DECIDE",
    "SPAN_ENRICH",
    "SPAN_FALLBACK",
    "SPAN_OPA_QUERY",
]

SPAN_DECIDE: Final = "policy.decide"
SPAN_ENRICH: Final = "policy.enrich"
SPAN_OPA_QUERY: Final = "opa.query"
SPAN_FALLBACK: Final = "policy.fallback"

ATTR_DECISION_ID: Final = "policy.decision_id"
ATTR_BUNDLE_REVISION: Final = "policy.bundle_revision"
ATTR_POLICY_ALLOW: Final = "policy.allow"
ATTR_ROUTE_COUNT: Final = "policy.route_count"
ATTR_DENIED_COUNT: Final = "policy.denied_count"
ATTR_DEFERRED_COUNT: Final = "policy.deferred_count"
ATTR_PRIORITY: Final = "policy.priority"
ATTR_DEGRADED: Final = "policy.degraded"
ATTR_EVENT: Final = "policy.event"
ATTR_IMAGE_REF: Final = "image.ref"
ATTR_CALLER_SUBJECT: Final = "caller.subject"
ATTR_ERROR_CODE: Final = "error.code"
ATTR_FAIL_MODE: Final = "policy.fail_mode"
ATTR_FALLBACK_RESULT: Final = "policy.fallback.result"

ATTR_OPA_URL: Final = "opa.url"
ATTR_OPA_EVAL_NS: Final = "opa.eval_ns"
ATTR_OPA_BUNDLE_REVISION: Final = "opa.bundle_revision"
ATTR_OPA_ATTEMPTS: Final = "opa.attempts"
ATTR_OPA_DECISION_ID: Final = "opa.decision_id"

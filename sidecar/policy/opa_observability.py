"""OPA's side of a decision's observability: its spans join our trace, its decision logs ours.

* Distributed tracing: with an OTLP endpoint configured, the managed OPA exports its own spans
  there (OPA's ``distributed_tracing``), and :class:`~sidecar.policy.opa.OpaEngine` sends the
  caller's ``traceparent`` on every query, so one trace id holds the sidecar's spans and OPA's.
* Decision logs: with ``policy.opa.decision_logs``, OPA writes one console entry per query and
  answers with its own ``decision_id``. The sidecar reads the entries from OPA's output and logs
  them as ``opa decision`` lines (logger ``sidecar.opa.decisions``) with that id, the trace id,
  the query path, the revision and OPA's timers — never the input or the result, which can hold
  masked facts (a customer id) that the sidecar's own decision log hides. The sidecar's
  ``decision`` line carries the same ``opa_decision_id``: that is the join.
"""

from __future__ import annotations

from typing import Any

import orjson

from sidecar.telemetry import get_logger, otlp_target

__all__ = ["distributed_tracing_args", "relay_decision_log"]

_log = get_logger("sidecar.opa.decisions")
_MARK = b'"msg":"Decision Log"'
# OPA's timers worth keeping: what the evaluation and the handler cost.
_TIMERS = ("timer_rego_query_eval_ns", "timer_server_handler_ns")


def distributed_tracing_args(
    otlp_endpoint: str | None, service_name: str, *, sample_percentage: int = 100
) -> tuple[str, ...]:
    """Return ``opa run`` flags exporting OPA's spans to ``otlp_endpoint`` (none without one).

    OPA samples a request whose ``traceparent`` says sampled regardless of the percentage; the
    percentage applies to requests that start a trace in OPA (none of ours do).
    """
    if not otlp_endpoint:
        return ()
    address, insecure = otlp_target(otlp_endpoint)
    settings = {
        "type": "grpc",
        "address": address,
        "service_name": f"{service_name}-opa",
        "sample_percentage": str(sample_percentage),
        "encryption": "off" if insecure else "tls",
    }
    args: list[str] = []
    for key, value in settings.items():
        args += ["--set", f"distributed_tracing.{key}={value}"]
    return tuple(args)


def relay_decision_log(line: bytes) -> bool:
    """Log ``line`` if it is one of OPA's console decision log entries; return whether it was."""
    if _MARK not in line:
        return False
    try:
        entry = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(entry, dict) or entry.get("msg") != "Decision Log":
        return False
    metrics: Any = entry.get("metrics")
    timers = {k: metrics[k] for k in _TIMERS if k in metrics} if isinstance(metrics, dict) else {}
    revisions = entry.get("bundles")
    _log.info(
        "opa decision",
        opa_decision_id=str(entry.get("decision_id", "")),
        trace_id=str(entry.get("trace_id", "")),
        span_id=str(entry.get("span_id", "")),
        path=str(entry.get("path", "")),
        bundle_revisions=(
            {
                str(k): str(v.get("revision", ""))
                for k, v in revisions.items()
                if isinstance(v, dict)
            }
            if isinstance(revisions, dict)
            else {}
        ),
        **timers,
    )
    return True

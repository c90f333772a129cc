"""The sidecar's Prometheus metrics, behind plain methods so callers never touch label plumbing."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from sidecar.errors import ErrorCode

__all__ = ["GRPC_TYPES", "LATENCY_BUCKETS", "METRIC_PREFIX", "Metrics", "Outcome"]

METRIC_PREFIX = "policy_sidecar_"

# A decision normally costs 0.5-5 ms (loopback OPA); the upper buckets catch retries and deadlines.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

# go-grpc-prometheus's default (Prometheus DefBuckets): what stock gRPC dashboards assume.
_GRPC_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: ``grpc_type`` label values, as go-grpc-prometheus names the four kinds of RPC.
GRPC_TYPES = ("unary", "client_stream", "server_stream", "bidi_stream")

Outcome = Literal["allow", "deny", "error"]
_OUTCOMES: tuple[Outcome, ...] = ("allow", "deny", "error")
# Mirrors sidecar.config._settings.FAIL_MODES (not imported: config imports telemetry).
_FAIL_MODES = ("closed", "legacy", "last-known")
# policy_sidecar_opa_circuit_state values: a number so alerts can say "> 0" (not closed).
_CIRCUIT_STATES = ("closed", "half_open", "open")  # value = position
_CACHE_RESULTS = ("hit", "miss", "expired", "bypass")


class Metrics:
    """The sidecar's metric families, registered in one (caller-owned) Prometheus registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every metric family in ``registry``."""
        self.registry = registry
        p = METRIC_PREFIX
        self._decisions = Counter(
            f"{p}decisions",
            "Decisions answered, by outcome and whether the fallback served them.",
            ["outcome", "degraded"],
            registry=registry,
        )
        self._decision_latency = Histogram(
            f"{p}decision_latency_seconds",
            "Wall time of one decision: validation, enrichment, policy query.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._opa_errors = Counter(
            f"{p}opa_errors",
            "Failed policy-engine queries, by sidecar error code.",
            ["code"],
            registry=registry,
        )
        self._opa_latency = Histogram(
            f"{p}opa_query_latency_seconds",
            "Wall time of one OPA query, including failed ones.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._revision = Gauge(
            f"{p}bundle_revision_info",
            "1 for the bundle revision currently serving decisions.",
            ["revision"],
            registry=registry,
        )
        self._in_flight = Gauge(
            f"{p}requests_in_flight",
            "gRPC requests being handled right now.",
            registry=registry,
        )
        self._grpc = Counter(
            f"{p}grpc_requests",
            "gRPC requests handled, by method and status code.",
            ["method", "code"],
            registry=registry,
        )
        self._circuit_state = Gauge(
            f"{p}opa_circuit_state",
            "OPA circuit breaker state: 0 closed, 1 half-open (probing), 2 open (failing fast).",
            registry=registry,
        )
        self._fallback = Counter(
            f"{p}fallback_decisions",
            "Decisions answered by the fail mode because OPA was unavailable, by mode.",
            ["mode"],
            registry=registry,
        )
        self._decision_cache = Counter(
            f"{p}decision_cache_lookups",
            "Decision cache lookups: hit, miss, expired (a time boundary crossed), bypass "
            "(an input time the cache cannot place).",
            ["result"],
            registry=registry,
        )
        # The standard gRPC server families (go-grpc-prometheus names and labels), so stock gRPC
        # dashboards and alerts work unchanged; no prefix, on purpose.
        rpc = ["grpc_type", "grpc_service", "grpc_method"]
        self._grpc_started = Counter(
            "grpc_server_started", "RPCs started on the server.", rpc, registry=registry
        )
        self._grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            [*rpc, "grpc_code"],
            registry=registry,
        )
        self._grpc_seconds = Histogram(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of RPCs handled by the server.",
            rpc,
            buckets=_GRPC_BUCKETS,
            registry=registry,
        )
        self._grpc_received = Counter(
            "grpc_server_msg_received",
            "RPC stream messages received on the server.",
            rpc,
            registry=registry,
        )
        self._grpc_sent = Counter(
            "grpc_server_msg_sent", "gRPC stream messages sent on the server.", rpc,
            registry=registry,
        )  # fmt: skip
        # Zero-valued series from the start let rate() and alerts work before the first event.
        for mode in _FAIL_MODES:
            self._fallback.labels(mode=mode)
        for outcome in _OUTCOMES:
            for degraded in ("false", "true"):
                self._decisions.labels(outcome=outcome, degraded=degraded)
        for code in ErrorCode:
            self._opa_errors.labels(code=code.value)
        # Label children by (family, values): prometheus_client's labels() validates and locks
        # on every call, six or seven times per Decide (issue 18: pre-bound children). Every
        # family cached here has bounded label values (codes, outcomes, registered methods).
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._active_revision: str | None = None
        # Swapping the revision is remove-then-set; the lock keeps two swaps from leaving two 1s.
        self._revision_lock = threading.Lock()

    def _child(self, family: Any, *values: str) -> Any:
        """``family.labels(*values)``, looked up once per distinct label values."""
        key = (id(family), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*values)
        return child

    def observe_decision(self, outcome: Outcome, degraded: bool, seconds: float) -> None:
        """Count one decision (allow|deny|error) and record its latency."""
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be one of {_OUTCOMES}, not {outcome!r}")
        self._child(self._decisions, outcome, "true" if degraded else "false").inc()
        self._decision_latency.observe(seconds)

    def observe_decision_cache(self, result: str) -> None:
        """Count one decision cache lookup: ``hit``, ``miss``, ``expired`` or ``bypass``."""
        if result not in _CACHE_RESULTS:
            raise ValueError(f"result must be one of {_CACHE_RESULTS}, not {result!r}")
        self._child(self._decision_cache, result).inc()

    def observe_opa_query(self, seconds: float) -> None:
        """Record the latency of one OPA query (successful or not)."""
        self._opa_latency.observe(seconds)

    def observe_opa_error(self, code: ErrorCode | str) -> None:
        """Count one failed OPA query; ``code`` must be an ErrorCode (or its value)."""
        # Going through ErrorCode keeps the label's cardinality bounded to the known codes.
        self._opa_errors.labels(code=ErrorCode(code).value).inc()

    def set_active_revision(self, revision: str) -> None:
        """Mark ``revision`` as the serving bundle revision, dropping the previous one's series."""
        with self._revision_lock:
            if revision == self._active_revision:
                return
            if self._active_revision is not None:
                self._revision.remove(self._active_revision)
            self._revision.labels(revision=revision).set(1)
            self._active_revision = revision

    @property
    def active_revision(self) -> str | None:
        """The revision last passed to set_active_revision, or None."""
        return self._active_revision

    def set_circuit_state(self, state: str) -> None:
        """Record the OPA circuit breaker state: ``closed``, ``half_open`` or ``open``."""
        self._circuit_state.set(_CIRCUIT_STATES.index(state))

    def observe_fallback(self, mode: str) -> None:
        """Count one decision served by fail mode ``mode`` (closed|legacy|last-known)."""
        if mode not in _FAIL_MODES:
            raise ValueError(f"mode must be one of {_FAIL_MODES}, not {mode!r}")
        self._fallback.labels(mode=mode).inc()

    def track_in_flight(self) -> AbstractContextManager[object]:
        """Return a context manager counting one request in flight while it is open."""
        return self._in_flight.track_inprogress()

    def observe_grpc(self, method: str, code: str) -> None:
        """Count one finished gRPC request; ``code`` is the status name, e.g. ``OK``."""
        self._child(self._grpc, method, code).inc()

    def grpc_started(self, grpc_type: str, service: str, method: str) -> None:
        """Count one RPC started (``grpc_server_started_total``)."""
        self._child(self._grpc_started, grpc_type, service, method).inc()

    def grpc_handled(
        self, grpc_type: str, service: str, method: str, code: str, seconds: float
    ) -> None:
        """Count one RPC finished with status ``code`` (e.g. ``OK``) after ``seconds``."""
        self._child(self._grpc_handled, grpc_type, service, method, code).inc()
        self._child(self._grpc_seconds, grpc_type, service, method).observe(seconds)
        self.observe_grpc(f"/{service}/{method}", code)

    def grpc_message(self, grpc_type: str, service: str, method: str, *, sent: bool) -> None:
        """Count one message received from (or, ``sent``, sent to) the caller."""
        family = self._grpc_sent if sent else self._grpc_received
        self._child(family, grpc_type, service, method).inc()

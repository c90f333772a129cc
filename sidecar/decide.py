"""The decision path: validate → enrich → ask the policy engine → record, with one span per decision.

Nothing here imports gRPC: the servicers translate messages and call :class:`DecisionService`, and
the CLI calls it directly, so both paths behave identically. When the engine reports OPA
unavailable (never for a PolicyError), the configured :class:`~sidecar.fallback.modes.Fallback`
answers and the result is marked ``degraded`` (DESIGN §6).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context

from sidecar.errors import PolicyError, PolicyUnavailable, SidecarError
from sidecar.fallback import Fallback
from sidecar.model.decision import (
    BatchAnswer,
    DecideRequest,
    Decision,
    DecisionResult,
    EngineAnswer,
    PolicyInput,
)
from sidecar.policy.decision_cache import DecisionCache, facts_digest, rfc3339_ns
from sidecar.records import DecisionRecord
from sidecar.telemetry import Telemetry, get_logger, names
from sidecar.typing import BatchEngine, DecisionStore, Enricher, PolicyEngine

__all__ = ["DecisionService"]

_log = get_logger("sidecar.decide")

SPAN_DECIDE_BATCH = "policy.decide_batch"
ATTR_BATCH_SIZE = "policy.batch_size"
#: On ``policy.decide``: the decision came from the decision cache (OPA was not asked again).
ATTR_CACHED = "policy.cached"
# One OPA answer or a batch of them: both carry the revision and evaluation time a span records.
_Answer = TypeVar("_Answer", EngineAnswer, BatchAnswer)


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class DecisionService:
    """Answers replication decisions for validated requests; the one place a decision is made."""

    def __init__(
        self,
        *,
        enricher: Enricher,
        engine: PolicyEngine,
        telemetry: Telemetry,
        records: DecisionStore,
        validate: Callable[[DecideRequest], None],
        engine_url: str = "",
        fallback: Fallback | None = None,
        bundle_revision: str = "",
        batch_engine: BatchEngine | None = None,
        cache: DecisionCache | None = None,
    ) -> None:
        self._enricher = enricher
        # With a cache, ``engine`` answers data.replication.cacheable: {decision, time boundaries}.
        self._cache = cache
        self._batch_engine = batch_engine
        self._engine = engine
        self._telemetry = telemetry
        self._records = records
        self._validate = validate
        self._engine_url = engine_url
        # OpenTelemetry's semantic-convention names for the same facts, so stock HTTP-client
        # views (Jaeger's, Grafana Tempo's) show the OPA query like any other outgoing call.
        self._semconv = _http_client_attributes(engine_url)
        self._fallback = fallback
        # The revision OPA last reported: what a degraded answer says it rests on.
        self._last_revision = bundle_revision

    def validate(self, request: DecideRequest) -> None:
        """Raise InvalidArgument naming the first malformed field of ``request``; no side effects."""
        self._validate(request)

    async def decide(
        self, request: DecideRequest, *, parent: Context | None = None
    ) -> DecisionResult:
        """Return the decision for ``request``; raises a SidecarError subclass on failure."""
        tracer = self._telemetry.tracer
        metrics = self._telemetry.metrics
        started = time.perf_counter()
        decision_id = uuid.uuid4().hex
        # SERVER when the decision starts (or continues a caller's) trace itself; INTERNAL under a
        # span already open (the gRPC server span, a webhook event's processing).
        inside = parent is None and trace.get_current_span().get_span_context().is_valid
        kind = trace.SpanKind.INTERNAL if inside else trace.SpanKind.SERVER
        with tracer.start_as_current_span(names.SPAN_DECIDE, context=parent, kind=kind) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            span.set_attribute(names.ATTR_DECISION_ID, decision_id)
            span.set_attribute(names.ATTR_IMAGE_REF, str(request.image))
            span.set_attribute(names.ATTR_EVENT, request.event)
            span.set_attribute(names.ATTR_CALLER_SUBJECT, request.caller.subject)
            try:
                self._validate(request)
                with tracer.start_as_current_span(names.SPAN_ENRICH):
                    policy_input, provenance = await self._enricher.enrich_traced(request)
                doc = policy_input.to_json()
                evaluated = await self._evaluate(policy_input, doc, decision_id, span)
                decision, revision, eval_ns, degraded, opa_decision_id, cached = evaluated
            except SidecarError as exc:
                elapsed = time.perf_counter() - started
                span.record_exception(exc)
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.message))
                span.set_attribute(names.ATTR_ERROR_CODE, exc.code.value)
                metrics.observe_decision("error", False, elapsed)
                _log.warning(
                    "decision failed",
                    decision_id=decision_id,
                    trace_id=trace_id,
                    error_code=exc.code.value,
                    error=exc.message,
                    image=str(request.image),
                )
                # The caller's status names this decision, so it can be found in logs and traces.
                exc.with_context(
                    decision_id=decision_id,
                    trace_id=trace_id,
                    bundle_revision=self._last_revision,
                )
                raise
            result = DecisionResult(
                decision=decision,
                decision_id=decision_id,
                bundle_revision=revision,
                trace_id=trace_id,
                degraded=degraded,
                eval_ns=eval_ns,
                input=policy_input,
                decided_at=_utc_now(),
                provenance=provenance,
                cached=cached,
                input_json=doc,
            )
            span.set_attribute(names.ATTR_BUNDLE_REVISION, revision)
            if cached:
                span.set_attribute(ATTR_CACHED, True)
            span.set_attribute(names.ATTR_POLICY_ALLOW, decision.allow)
            span.set_attribute(names.ATTR_PRIORITY, decision.priority)
            span.set_attribute(names.ATTR_ROUTE_COUNT, len(decision.routes))
            span.set_attribute(names.ATTR_DENIED_COUNT, len(decision.denied))
            span.set_attribute(names.ATTR_DEFERRED_COUNT, len(decision.deferred))
            span.set_attribute(names.ATTR_DEGRADED, degraded)
        self._records.put(result)
        elapsed = time.perf_counter() - started
        metrics.observe_decision("allow" if decision.allow else "deny", degraded, elapsed)
        _log.info(
            "decision",
            decision_id=decision_id,
            trace_id=trace_id,
            bundle_revision=revision,
            image=str(request.image),
            allow=decision.allow,
            routes=[r.registry for r in decision.routes],
            deferred=[d.registry for d in decision.deferred],
            remove=[d.registry for d in decision.remove],
            priority=decision.priority,
            degraded=degraded,
            duration_ms=round(elapsed * 1000, 3),
            **({"opa_decision_id": opa_decision_id} if opa_decision_id else {}),
            **({"cached": True} if cached else {}),
        )
        return result

    async def _evaluate(
        self,
        policy_input: PolicyInput,
        doc: Mapping[str, Any],
        decision_id: str,
        span: trace.Span,
    ) -> tuple[Decision, str, int, bool, str, bool]:
        """Ask the cache, then OPA, or the fail mode when OPA is unavailable: (decision, revision,
        eval ns, degraded, OPA's own decision id — set only while its decision logs are on,
        cached). ``doc`` is ``policy_input.to_json()``."""
        cache, key, now_ns = self._cache, "", None
        if cache is not None:
            now_ns = rfc3339_ns(doc["now"])
            if now_ns is None:  # a time the cache cannot place: OPA decides, nothing is kept
                self._telemetry.metrics.observe_decision_cache("bypass")
            else:
                key = facts_digest(doc)
                entry, outcome = cache.get(key, now_ns)
                self._telemetry.metrics.observe_decision_cache(outcome)
                if entry is not None:
                    return entry.decision, entry.bundle_revision, 0, False, "", True
        try:
            answer, boundaries = await self._query_bounded(doc)
        except PolicyUnavailable as exc:
            if self._fallback is None:
                raise
            decision, revision = self._degrade(policy_input, exc, decision_id, span)
            return decision, revision, 0, True, "", False
        decision = _parse_decision(answer.result)
        self._last_revision = answer.bundle_revision
        if cache is not None and key and now_ns is not None and boundaries is not None:
            cache.put(key, decision, answer.bundle_revision, now_ns, boundaries)
        if self._fallback is not None:
            self._fallback.remember(doc, answer.bundle_revision, decision)
        return (
            decision, answer.bundle_revision, answer.eval_ns, False, answer.engine_decision_id,
            False,
        )  # fmt: skip

    def note_revision(self, revision: str) -> None:
        """The revision OPA serves now (the revision watcher's poll): the cache follows it."""
        if self._cache is not None:
            self._cache.note_revision(revision)

    def _degrade(
        self,
        policy_input: PolicyInput,
        error: PolicyUnavailable,
        decision_id: str,
        span: trace.Span,
    ) -> tuple[Decision, str]:
        """Answer from the fail mode; metric, span attributes and a warning say so."""
        if self._fallback is None:  # decide() checks first; kept for type narrowing
            raise error
        mode = self._fallback.mode
        with self._telemetry.tracer.start_as_current_span(names.SPAN_FALLBACK) as fb_span:
            decision, revision, how = self._fallback.decide(policy_input, self._last_revision)
            fb_span.set_attribute(names.ATTR_FAIL_MODE, mode)
            fb_span.set_attribute(names.ATTR_FALLBACK_RESULT, how)
        self._telemetry.metrics.observe_fallback(mode)
        span.set_attribute(names.ATTR_DEGRADED, True)
        span.set_attribute(names.ATTR_FAIL_MODE, mode)
        span.add_event("policy unavailable; fail mode answered", {"error": error.message})
        _log.warning(
            "decision degraded: OPA unavailable, answered by the fail mode",
            decision_id=decision_id,
            fail_mode=mode,
            fallback_result=how,
            bundle_revision=revision,
            error=error.message,
            image=str(policy_input.image.ref),
        )
        return decision, revision

    async def decide_batch(
        self,
        requests: Sequence[DecideRequest],
        *,
        parent: Context | None = None,
        enrich_concurrency: int = 8,
        timeout_s: float | None = None,
        inputs: Sequence[PolicyInput] | None = None,
    ) -> list[DecisionResult]:
        """Decide many requests with one policy query (the reconciler's bulk path), in order.

        Each request is validated and enriched exactly as :meth:`decide` does; the inputs go to
        OPA together (``data.replication.batch.decisions``) when a batch engine is configured,
        else one query each. When OPA is unavailable every answer comes from the fail mode,
        marked ``degraded``. A request that fails validation raises for the whole batch.
        At most ``enrich_concurrency`` requests are enriched at once: enrichment reads the source
        registry, and a batch all at once would run its sources into their deadlines (a fact
        missing that way degrades the decision, e.g. to SCAN_MISSING). ``timeout_s`` is the batch
        query's deadline (default: the engine's per-decision one, too short for a large batch).
        ``inputs``: the requests' inputs from :meth:`enrich_batch`, amended by the caller (the
        reconciler's measured tenant usage), decided as they are instead of enriched again.
        """
        if not requests:
            return []
        tracer, metrics = self._telemetry.tracer, self._telemetry.metrics
        started = time.perf_counter()
        with tracer.start_as_current_span(SPAN_DECIDE_BATCH, context=parent) as span:
            trace_id = format(span.get_span_context().trace_id, "032x")
            span.set_attribute(ATTR_BATCH_SIZE, len(requests))
            if inputs is None:
                inputs = await self.enrich_batch(requests, enrich_concurrency=enrich_concurrency)
            elif len(inputs) != len(requests):
                raise ValueError(f"{len(inputs)} inputs for {len(requests)} requests")
            inputs = list(inputs)
            docs = [policy_input.to_json() for policy_input in inputs]
            try:
                raw, revision, eval_ns = await self._query_batch(docs, timeout_s)
            except PolicyUnavailable as exc:
                if self._fallback is None:
                    raise
                answers = [(*self._degrade(pi, exc, uuid.uuid4().hex, span), True) for pi in inputs]
                eval_ns = 0
            else:
                answers = [(_parse_decision(r), revision, False) for r in raw]
                self._last_revision = revision
                if self._fallback is not None:
                    for doc, (decision, _, _) in zip(docs, answers, strict=True):
                        self._fallback.remember(doc, revision, decision)
            span.set_attribute(names.ATTR_BUNDLE_REVISION, answers[0][1])
        decided_at = _utc_now()
        results = [
            DecisionResult(
                decision=decision,
                decision_id=uuid.uuid4().hex,
                bundle_revision=rev,
                trace_id=trace_id,
                degraded=degraded,
                eval_ns=eval_ns // len(requests),
                input=policy_input,
                decided_at=decided_at,
            )
            for policy_input, (decision, rev, degraded) in zip(inputs, answers, strict=True)
        ]
        elapsed = (time.perf_counter() - started) / len(requests)
        for result in results:
            self._records.put(result)
            metrics.observe_decision(
                "allow" if result.decision.allow else "deny", result.degraded, elapsed
            )
        return results

    async def enrich_batch(
        self, requests: Sequence[DecideRequest], *, enrich_concurrency: int = 8
    ) -> list[PolicyInput]:
        """Validate and enrich ``requests`` as :meth:`decide` does (at most ``enrich_concurrency``
        at once), without asking the policy; return their inputs in order."""
        for request in requests:
            self._validate(request)
        limit = asyncio.Semaphore(max(1, enrich_concurrency))

        async def enrich(request: DecideRequest) -> PolicyInput:
            async with limit:
                return await self._enricher.enrich(request)

        with self._telemetry.tracer.start_as_current_span(names.SPAN_ENRICH):
            return list(await asyncio.gather(*(enrich(r) for r in requests)))

    async def _query_batch(
        self, docs: Sequence[Mapping[str, Any]], timeout_s: float | None
    ) -> tuple[list[Mapping[str, Any]], str, int]:
        if self._batch_engine is None:
            answers = await asyncio.gather(*(self._query(doc) for doc in docs))
            eval_ns = sum(a.eval_ns for a in answers)
            return [a.result for a in answers], answers[0].bundle_revision, eval_ns
        answer = await self._observed_query(
            self._batch_engine.evaluate_batch(docs, timeout_s=timeout_s), batch=len(docs)
        )
        return list(answer.results), answer.bundle_revision, answer.eval_ns

    async def evaluate_raw(self, policy_input: Mapping[str, Any]) -> tuple[Decision, str]:
        """Evaluate a raw DESIGN §3.1 input (no enrichment); return the decision and revision."""
        answer = await self._query(policy_input)
        return _parse_decision(answer.result), answer.bundle_revision

    def holds_secrets(self, request: DecideRequest) -> bool:
        """Whether ``request`` states facts the record mask hides (configured paths or sensitive
        values): such a request must not be stored at rest for a later decision."""
        doc = {"image": {"labels": dict(request.labels), "annotations": dict(request.annotations)}}
        return self._records.hides_any_of(doc)

    def explain(self, decision_id: str) -> DecisionRecord | None:
        """Return the stored (masked) record of an earlier decision, or None."""
        return self._records.get(decision_id)

    async def _query(self, doc: Mapping[str, Any]) -> EngineAnswer:
        answer, _ = await self._query_bounded(doc)
        return answer

    async def _query_bounded(
        self, doc: Mapping[str, Any]
    ) -> tuple[EngineAnswer, tuple[int, ...] | None]:
        """Ask OPA: its answer (the decision document) and, with a cache, its time boundaries
        (None when the policy declared none that can be read: then nothing is cached)."""
        answer = await self._observed_query(self._engine.evaluate(doc))
        if self._cache is None:
            return answer, None
        return _unwrap_cacheable(answer)

    async def _observed_query(self, query: Awaitable[_Answer], *, batch: int = 0) -> _Answer:
        """Await one OPA query inside its client span, timed and counted (errors by code)."""
        tracer, metrics = self._telemetry.tracer, self._telemetry.metrics
        with tracer.start_as_current_span(names.SPAN_OPA_QUERY, kind=trace.SpanKind.CLIENT) as span:
            span.set_attribute(names.ATTR_OPA_URL, self._engine_url)
            span.set_attributes(self._semconv)
            if batch:
                span.set_attribute(ATTR_BATCH_SIZE, batch)
            started = time.perf_counter()
            try:
                answer = await query
            except SidecarError as exc:
                metrics.observe_opa_error(exc.code.value)
                span.set_status(trace.Status(trace.StatusCode.ERROR, exc.message))
                raise
            finally:
                metrics.observe_opa_query(time.perf_counter() - started)
            span.set_attribute(names.ATTR_OPA_BUNDLE_REVISION, answer.bundle_revision)
            span.set_attribute(names.ATTR_OPA_EVAL_NS, answer.eval_ns)
            if isinstance(answer, EngineAnswer) and answer.engine_decision_id:
                span.set_attribute(names.ATTR_OPA_DECISION_ID, answer.engine_decision_id)
        metrics.set_active_revision(answer.bundle_revision)
        return answer


def _http_client_attributes(url: str) -> dict[str, str | int]:
    """``server.address``/``server.port``/``http.request.method`` of an OPA query to ``url``."""
    if not url:
        return {}
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {
        "server.address": parts.hostname or "",
        "server.port": port,
        "http.request.method": "POST",
    }


def _unwrap_cacheable(answer: EngineAnswer) -> tuple[EngineAnswer, tuple[int, ...] | None]:
    """Split a data.replication.cacheable answer into the decision's answer and its boundaries."""
    decision = answer.result.get("decision")
    if not isinstance(decision, dict):
        raise PolicyError(f"data.replication.cacheable.decision is {type(decision).__name__}")
    raw = answer.result.get("time_boundaries_ns")
    boundaries: tuple[int, ...] | None = None
    if isinstance(raw, list) and all(
        isinstance(b, (int, float)) and not isinstance(b, bool) for b in raw
    ):
        boundaries = tuple(int(b) for b in raw)
    return dataclasses.replace(answer, result=decision), boundaries


def _parse_decision(result: Mapping[str, Any]) -> Decision:
    try:
        return Decision.from_json(result)
    except (KeyError, TypeError, ValueError) as exc:
        raise PolicyError(f"policy returned a malformed decision: {exc!r}") from exc

"""Deciding every source image of an observation in batches on OPA (the reconciler's decide step).

Enrichment (registry reads when cold, Python when warm) and OPA's evaluation overlap: each chunk
of inputs goes to OPA as soon as it is enriched, while the next chunk is enriched. Only an input
attributed to a tenant waits for all the others, because its tenant's measured usage is the
bytes of all that tenant's copies and which images are the tenant's is known only once every
image was enriched (label or prefix).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from opentelemetry import trace

from sidecar.config import ReconcileSettings
from sidecar.decide import DecisionService
from sidecar.model.decision import (
    Caller,
    DecideRequest,
    DecisionResult,
    ImageRef,
    PolicyInput,
    TenantUsage,
)
from sidecar.reconcile.observe import Observation, ObservedTag, Progress
from sidecar.reconcile.usage import measured_usage, with_measured_usage

__all__ = ["RECONCILER", "batch_spans", "decide_all", "present_at"]

_tracer = trace.get_tracer("sidecar.reconcile")
#: The caller of every decision the reconciler asks for (and of the jobs it queues).
RECONCILER = Caller(subject="reconciler", roles=("reconciler",))


def batch_spans(count: int, size: int, concurrency: int) -> list[tuple[int, int]]:
    """Split ``count`` inputs into batches of at most ``size``, as even as can be, and as many
    as a multiple of ``concurrency`` when there are enough inputs.

    OPA evaluates one query on one core: 1,000 inputs as 200, 200, 200, 200, 200 with two in
    flight leave a core idle while the fifth runs alone; as six batches of 166-167 none idles.
    """
    if count <= 0:
        return []
    batches = -(-count // size)
    if count >= concurrency:
        batches = min(count, -(-batches // concurrency) * concurrency)
    base, extra = divmod(count, batches)
    spans, start = [], 0
    for n in range(batches):
        end = start + base + (1 if n < extra else 0)
        spans.append((start, end))
        start = end
    return spans


def present_at(
    tag: ObservedTag, observation: Observation, sources: Sequence[str]
) -> tuple[str, ...]:
    """Registries other than the sources holding ``tag``'s digest at the same repository:tag."""
    held = []
    for name in observation.registries:
        if name in sources or name == tag.registry:
            continue
        found = observation.at(name, tag.repository, tag.tag)
        if found is not None and found.digest == tag.digest:
            held.append(name)
    return tuple(held)


async def decide_all(
    originals: Sequence[ObservedTag],
    observation: Observation,
    *,
    sources: Sequence[str],
    decisions: DecisionService,
    settings: ReconcileSettings,
    limits: Mapping[str, TenantUsage],
    progress: Progress | None = None,
) -> list[DecisionResult]:
    """Decide each of ``originals`` (event ``reconcile``, with its ``present_at``), in order.

    Batches of at most ``settings.batch_size`` inputs, ``batch_concurrency`` in flight, each
    within ``batch_timeout_s``; ``concurrency`` enrichments at once; ``limits``: the tenants'
    configured storage limits.
    """
    requests = [
        DecideRequest(
            image=ImageRef(t.registry, t.repository, t.tag, t.digest),
            event="reconcile",
            caller=RECONCILER,
            size_bytes=t.size_bytes,
            present_at=present_at(t, observation, sources),
        )
        for t in originals
    ]
    results: list[DecisionResult | None] = [None] * len(requests)
    # Several batches in flight: OPA evaluates each query on one core, so one at a time
    # leaves the other core idle (policy.reconcile.batch_concurrency).
    limit = asyncio.Semaphore(settings.batch_concurrency)
    done = 0

    async def evaluate(indexes: Sequence[int], inputs: Sequence[PolicyInput]) -> None:
        nonlocal done
        async with limit:
            with _tracer.start_as_current_span("reconcile.decide_batch") as span:
                span.set_attribute("reconcile.batch", len(indexes))
                answers = await decisions.decide_batch(
                    [requests[i] for i in indexes],
                    timeout_s=settings.batch_timeout_s,
                    inputs=inputs,
                )
        for index, answer in zip(indexes, answers, strict=True):
            results[index] = answer
        done += len(indexes)
        if progress is not None:
            progress("decide", done, len(requests))

    tasks: list[asyncio.Future[None]] = []
    inputs: list[PolicyInput] = []
    chunks = batch_spans(len(requests), settings.batch_size, settings.batch_concurrency)
    try:
        for start, end in chunks:
            chunk = await decisions.enrich_batch(
                requests[start:end], enrich_concurrency=settings.concurrency
            )
            inputs += chunk
            if progress is not None:
                progress("enrich", len(inputs), len(requests))
            free = [n for n, i in enumerate(chunk) if not i.image.tenant]
            if free:
                tasks.append(
                    asyncio.ensure_future(
                        evaluate([start + n for n in free], [chunk[n] for n in free])
                    )
                )
        measured = measured_usage(inputs, observation, sources)
        owned = [n for n, i in enumerate(inputs) if i.image.tenant]
        for start, end in batch_spans(len(owned), settings.batch_size, settings.batch_concurrency):
            indexes = owned[start:end]
            amended = [with_measured_usage(inputs[n], measured, limits) for n in indexes]
            tasks.append(asyncio.ensure_future(evaluate(indexes, amended)))
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # one batch failed (or the run was cancelled): stop the others
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    decided = [r for r in results if r is not None]
    if len(decided) != len(requests):  # every batch answered each of its inputs: cannot happen
        raise RuntimeError(f"{len(requests) - len(decided)} reconcile decisions went missing")
    return decided

"""Before a queued or parked copy runs: does the policy active *now* still route it?

A job records the bundle revision its decision was made on, when it was made, and the request it
was decided from. When a worker claims a copy job whose revision differs from the active one, or
whose decision is older than ``policy.replication.redecide_after_s`` (a scan that expired while it
waited, a quota that filled, a registry parked for a day), :class:`RevisionGuard` decides the
stored request again: a job the new decision still routes (same registry, repository and tag)
runs as planned, re-stamped with that decision; one it no longer routes is withdrawn (``skipped``,
error code ``withdrawn``, the reason naming both revisions, and the decision's age when that was
the trigger). Routes the new decision adds (the image now wanted somewhere else too, or instead)
are queued as jobs of that decision — idempotent by destination, so the other jobs of the same old
decision add nothing more. A degraded answer (OPA unreachable) is no verdict: the job runs on its
earlier decision. A job without a stored request (queued before schema 4, or decided on sensitive
data) runs as planned.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from sidecar.decide import DecisionService
from sidecar.enrich.rfc3339 import parse_rfc3339
from sidecar.errors import PolicyError, PolicyUnavailable
from sidecar.model.decision import DecideRequest, DecisionResult
from sidecar.model.jobs import Job
from sidecar.replicate.deferred import request_from_json
from sidecar.replicate.service import job_specs
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import JobQueue

__all__ = ["WITHDRAWN", "RevisionGuard"]

#: The error code of a job the active policy no longer routes.
WITHDRAWN = "withdrawn"
_log = get_logger("sidecar.replicate.redecide")


class RevisionGuard:
    """A :class:`~sidecar.typing.Redecider`: a revision change or a stale decision asks again."""

    def __init__(
        self,
        decisions: DecisionService,
        store: JobQueue,
        active_revision: Callable[[], str],
        *,
        max_age_s: float = 0.0,
        metrics_registry: CollectorRegistry | None = None,
    ) -> None:
        self._decisions = decisions
        self._store = store
        self._active = active_revision
        # 0: decided again only on a revision change.
        self._max_age_s = max_age_s
        self._outcomes = Counter(
            f"{METRIC_PREFIX}replication_jobs_redecided",
            "Copy jobs decided again before running, by why (the bundle revision changed, or "
            "the decision was older than redecide_after_s) and outcome.",
            ["trigger", "outcome"],
            registry=metrics_registry or CollectorRegistry(),
        )
        self._added = Counter(
            f"{METRIC_PREFIX}replication_redecided_routes_added",
            "Copy jobs queued for routes a re-decision added (the new revision wants the image "
            "somewhere its old decision did not).",
            registry=metrics_registry or CollectorRegistry(),
        )

    async def redecide(self, job: Job, worker_id: str) -> str:
        """Return "" to run ``job``, else why the active policy withdrew it."""
        spec = job.spec
        if spec.kind != "copy" or spec.dry_run or not spec.request:
            return ""
        active = self._active()
        age = self._age_s(job)
        if active and spec.bundle_revision != active:
            trigger = "revision"
        elif self._max_age_s > 0 and age is not None and age > self._max_age_s:
            trigger = "age"
        else:
            return ""
        request = request_from_json(spec.request)
        try:
            result = await self._decisions.decide(request)
        except (PolicyUnavailable, PolicyError) as exc:
            _log.warning("job re-decision failed; runs as planned", job_id=job.job_id,
                         error=exc.message)  # fmt: skip
            self._outcomes.labels(trigger=trigger, outcome="error").inc()
            return ""
        if result.degraded:
            self._outcomes.labels(trigger=trigger, outcome="degraded").inc()
            return ""
        await self._queue_added_routes(job, result, request)
        routed = result.decision.allow and any(
            (r.registry, r.repository, r.tag)
            == (spec.destination_registry, spec.destination_repository, spec.tag)
            for r in result.decision.routes
        )
        if routed:
            await self._store.redecided(
                job.job_id, worker_id,
                decision_id=result.decision_id, bundle_revision=result.bundle_revision,
            )  # fmt: skip
            self._outcomes.labels(trigger=trigger, outcome="kept").inc()
            _log.info("job re-decided: still routed", job_id=job.job_id, trigger=trigger,
                      previous_revision=spec.bundle_revision, decision_age_s=_rounded(age),
                      bundle_revision=result.bundle_revision)  # fmt: skip
            return ""
        self._outcomes.labels(trigger=trigger, outcome=WITHDRAWN).inc()
        why = "denied" if not result.decision.allow else "routes it elsewhere"
        again = (
            f"; decided again as its decision was {_rounded(age)} s old, over "
            f"redecide_after_s {_rounded(self._max_age_s)}"
            if trigger == "age"
            else ""
        )
        reason = (
            f"withdrawn before it ran: bundle revision {result.bundle_revision} no longer routes "
            f"{job.source} to {job.destination} ({why}; decision {result.decision_id}; queued "
            f"under revision {spec.bundle_revision}{again})"
        )
        _log.info("job withdrawn by the active policy", job_id=job.job_id, trigger=trigger,
                  reason=reason)  # fmt: skip
        return reason

    @staticmethod
    def _age_s(job: Job) -> float | None:
        """Seconds from ``job``'s decision (its creation, for jobs stored before that was
        recorded) to its claim; None when the store's times cannot be read.

        Both instants are the store's (the database's clock on PostgreSQL; a claim stamps
        ``updated_at``), so hosts whose clocks disagree still measure the same age.
        """
        decided = parse_rfc3339(job.decided_at or job.created_at)
        claimed = parse_rfc3339(job.updated_at)
        if decided is None or claimed is None:
            return None
        return (claimed - decided).total_seconds()

    async def _queue_added_routes(
        self, job: Job, result: DecisionResult, request: DecideRequest
    ) -> None:
        """Queue the routes of ``result`` other than ``job``'s own destination (idempotent)."""
        spec = job.spec
        own = (spec.destination_registry, spec.destination_repository, spec.tag)
        specs = [
            s
            for s in job_specs(result, request.image, request=request)
            if (s.destination_registry, s.destination_repository, s.tag) != own
        ]
        if not specs:
            return
        queued = await self._store.enqueue(specs)
        fresh = [j for j in queued if j.spec.decision_id == result.decision_id]
        if fresh:
            self._added.inc(len(fresh))
            _log.info("routes added by the active bundle revision queued", job_id=job.job_id,
                      bundle_revision=result.bundle_revision, decision_id=result.decision_id,
                      jobs=[j.job_id for j in fresh],
                      destinations=[j.destination for j in fresh])  # fmt: skip


def _rounded(seconds: float | None) -> str:
    """``seconds`` for a log or a reason: whole seconds, or "?" when unknown."""
    return "?" if seconds is None else f"{seconds:.0f}"

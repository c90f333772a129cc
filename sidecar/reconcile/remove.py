"""Apply removals and cleanups, each re-checked against the registries just before it deletes.

The rails (DESIGN §3.4, docs/reconcile.md), in the order they are checked:

1. blocked in the plan (source registry, degraded decision, protected tag, unreadable registry);
2. never a source registry (checked again: a plan is a value, it may come from anywhere);
3. never past ``policy.reconcile.max_removals_per_run``: the run stops removing and says so;
4. never while the source cannot be read (its existence is unknown);
5. never before the copies that replace it (same image, copy/retag in the plan) succeeded;
6. never a tag whose digest changed since the plan (HEAD again): someone else's write.

Each removal that passes is a durable ``delete`` job (sidecar.replicate.delete), which checks the
source and the digest once more when it runs and deletes by digest only when no other tag keeps
it. Every removal is an audit event (actor, decision id, revision, reasons, job) and a metric.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from prometheus_client import CollectorRegistry, Counter

from sidecar.audit import AuditEvent, AuditTrail
from sidecar.errors import SidecarError
from sidecar.model.jobs import Job, JobSpec, JobState
from sidecar.oci import RegistryClients
from sidecar.reconcile.jobs import WaitJobs
from sidecar.reconcile.observe import Observation, Scope
from sidecar.reconcile.plan import BLOCKED_PROTECTED, BLOCKED_SOURCE, Plan, PlanAction
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import JobQueue

__all__ = ["RemovalOutcome", "Remover"]

_log = get_logger("sidecar.reconcile.remove")

#: (action, "" when removed, else why not); ``stopped`` says why the run stopped removing.
RemovalOutcome = tuple[list[PlanAction], list[tuple[PlanAction, str]], str]


class Remover:
    """Executes the ``remove`` and ``cleanup`` actions of a plan within the safety rails."""

    def __init__(
        self,
        clients: RegistryClients,
        jobs: JobQueue,
        *,
        wait: WaitJobs,
        wake: Callable[[], None] = lambda: None,
        sources: Collection[str],
        scope: Scope,
        max_removals: int,
        audit: AuditTrail | None = None,
        metrics_registry: CollectorRegistry | None = None,
        actor: str = "reconciler",
    ) -> None:
        self._clients = clients
        self._jobs = jobs
        self._wait = wait
        self._wake = wake
        self._sources = frozenset(sources)
        self._scope = scope
        self._max = max_removals
        self._audit = audit
        self._actor = actor
        registry = metrics_registry or CollectorRegistry()
        self._removed = Counter(
            f"{METRIC_PREFIX}reconcile_removals",
            "Copies removed by the reconciler, by action kind and first reason.",
            ["kind", "reason"],
            registry=registry,
        )
        self._refused = Counter(
            f"{METRIC_PREFIX}reconcile_removals_refused",
            "Removals the reconciler's safety rails refused, by rail.",
            ["rail"],
            registry=registry,
        )

    async def apply(
        self,
        plan: Plan,
        observation: Observation,
        *,
        copies: Sequence[Job] | None = None,
    ) -> RemovalOutcome:
        """Run every unblocked removal of ``plan`` as a delete job; return (removed, refused, stopped).

        ``copies`` are this run's copy jobs as they ended (None: no copy ran in this run): a
        removal of an image whose copies are planned waits for all of them to have succeeded.
        ``observation`` is what the plan was made from (kept for the caller's report).
        """
        del observation  # the rails read the registries again instead
        removed: list[PlanAction] = []
        refused: list[tuple[PlanAction, str]] = []
        queued: list[PlanAction] = []
        stopped = ""
        settled = _successes(copies) if copies is not None else None
        for action in plan.of("remove", "cleanup"):
            why = self._static_rail(action)
            if why:
                self._refuse(refused, action, why, "plan")
                continue
            if len(queued) >= self._max:
                stopped = (
                    f"stopped after {len(queued)} removal(s): policy.reconcile."
                    f"max_removals_per_run is {self._max}"
                )
                self._refuse(refused, action, stopped, "max_removals_per_run")
                continue
            # Rebalancing: the new copies first, then the removal of the dropped ones.
            why = _copies_pending(action, plan, settled)
            if why:
                self._refuse(refused, action, why, "copy_pending")
                continue
            try:
                why = await self._live_rail(action)
            except SidecarError as exc:
                why = f"failed: {exc.message}"
            if why:
                self._refuse(refused, action, why, "changed")
                continue
            queued.append(action)
        if queued:
            # Durable before anything is deleted: a crash leaves jobs that resume, idempotent.
            jobs = await self._jobs.requeue([_delete_spec(a) for a in queued])
            self._wake()
            ended = await self._wait(jobs)
            for action, job in zip(queued, ended, strict=True):
                if job.state is JobState.SUCCEEDED:
                    removed.append(action)
                    await self._record(action, job)
                else:
                    self._refuse(refused, action, f"failed: {job.error or job.state.value}", "job")
        if stopped:
            _log.warning("reconcile stopped removing", reason=stopped, removed=len(removed))
        return removed, refused, stopped

    def _static_rail(self, action: PlanAction) -> str:
        if action.blocked:
            return action.blocked
        if action.registry in self._sources:
            return BLOCKED_SOURCE
        if self._scope.protected(action.tag):
            return BLOCKED_PROTECTED
        return ""

    async def _live_rail(self, action: PlanAction) -> str:
        """Check the registries now: the source readable, the target still at the planned digest."""
        if action.source:
            registry, _, path = action.source.partition("@")[0].partition("/")
            repository = path.rpartition(":")[0]
            digest = action.source.partition("@")[2]
            try:
                found = await self._clients.get(registry).head_manifest(repository, digest)
            except SidecarError as exc:
                return f"source {action.source} cannot be read: {exc.message}"
            if found is None:
                return f"source {action.source} is gone: its copies are left as they are"
        held = await self._clients.get(action.registry).head_manifest(action.repository, action.tag)
        if held is None:
            return "already absent"
        if held.digest != action.digest:
            return f"digest changed since the plan ({held.digest}): someone else's write"
        return ""

    async def _record(self, action: PlanAction, job: Job) -> None:
        reason = action.reasons[0] if action.reasons else ""
        self._removed.labels(kind=action.kind, reason=reason or "none").inc()
        detail = (
            f"{action.kind} {action.target}@{action.digest} source={action.source} "
            f"decision_id={action.decision_id} reasons={','.join(action.reasons)} "
            f"job_id={job.job_id}"
        )
        _log.info(
            "reconcile removed",
            kind=action.kind,
            target=action.target,
            digest=action.digest,
            decision_id=action.decision_id,
            bundle_revision=action.bundle_revision,
            reasons=list(action.reasons),
            actor=self._actor,
            job_id=job.job_id,
        )
        if self._audit is not None:
            await self._audit.record(
                AuditEvent(
                    actor=self._actor,
                    action="Reconcile",
                    outcome="removed",
                    new_revision=action.bundle_revision,
                    digest=action.digest,
                    detail=detail,
                )
            )

    def _refuse(
        self, refused: list[tuple[PlanAction, str]], action: PlanAction, why: str, rail: str
    ) -> None:
        refused.append((action, why))
        self._refused.labels(rail=rail).inc()
        _log.info("reconcile removal refused", target=action.target, rail=rail, why=why)


def _successes(jobs: Sequence[Job]) -> dict[str, bool]:
    """Source digest → whether every copy job of it succeeded."""
    done: dict[str, bool] = {}
    for job in jobs:
        ok = job.state is JobState.SUCCEEDED
        done[job.spec.digest] = done.get(job.spec.digest, True) and ok
    return done


def _copies_pending(action: PlanAction, plan: Plan, settled: dict[str, bool] | None) -> str:
    """Why a removal must wait for the copies of the same image (none planned: no wait)."""
    replacing = [a for a in plan.of("copy", "retag") if a.source == action.source and a.source]
    if not replacing:
        return ""
    if settled is None:
        return "the copies replacing it were not executed in this run"
    if not settled.get(action.digest, False):
        return "the copies replacing it have not all succeeded"
    return ""


def _delete_spec(action: PlanAction) -> JobSpec:
    """The delete job of one removal: the action's target, its source, its decision."""
    source, _, digest = action.source.partition("@")
    registry, _, path = source.partition("/")
    return JobSpec(
        source_registry=registry,
        source_repository=path.rpartition(":")[0],
        digest=digest or action.digest,
        destination_registry=action.registry,
        destination_repository=action.repository,
        tag=action.tag,
        priority=action.priority,
        decision_id=action.decision_id,
        bundle_revision=action.bundle_revision,
        kind="delete",
    )

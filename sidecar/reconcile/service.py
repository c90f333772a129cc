"""The reconciler: observe → decide (event ``reconcile``, in batches) → plan → apply.

The decisions come from :class:`~sidecar.decide.DecisionService` (validate → enrich → policy,
fail mode included): the reconciler adds only what it observed, ``image.present_at``. Applying
sends copies through the durable job queue, like every other copy, and removals through
:class:`~sidecar.reconcile.remove.Remover`, which re-checks each one before it deletes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from opentelemetry import trace
from prometheus_client import CollectorRegistry, Counter, Gauge

from sidecar.config import Config
from sidecar.decide import DecisionService
from sidecar.errors import InvalidArgument, PolicyError, PolicyUnavailable, ReconcileBusy
from sidecar.model.decision import DecideRequest, ImageRef, PolicyInput
from sidecar.model.jobs import Job, JobSpec
from sidecar.reconcile.baselines import Baseline, Baselines, Place, outcome
from sidecar.reconcile.bulk import RECONCILER, decide_all
from sidecar.reconcile.jobs import settle
from sidecar.reconcile.lease import held
from sidecar.reconcile.observe import Observation, ObservedTag, Observer, Progress, Scope
from sidecar.reconcile.plan import Plan, PlanAction, SourceImage, build_plan, cleanup_actions
from sidecar.reconcile.preview import CandidateFactory, Preview, compare
from sidecar.reconcile.remove import Remover
from sidecar.reconcile.usage import measured_usage
from sidecar.replicate.deferred import request_to_json
from sidecar.telemetry import METRIC_PREFIX, get_logger
from sidecar.typing import BatchEngine, JobQueue, Leases, Placements, ReconcileBaselines

__all__ = ["APPLY_LEASE", "RETENTION_PATH", "ApplyReport", "Reconciler"]

_log = get_logger("sidecar.reconcile")
_tracer = trace.get_tracer("sidecar.reconcile")
#: The retention query of DESIGN §3.4.
RETENTION_PATH = "replication/retention"
#: The lease an applying run holds (one applying run at a time across replicas and the CLI).
APPLY_LEASE = "reconcile-apply"
# The referrers fallback tag and cosign's tags (sha256-<hex>[.sig|.att|.sbom]) are not images of
# their own: they travel with the image they refer to (sidecar.replicate.copy).
_REFERRER_TAG = re.compile(r"^sha256-[0-9a-f]{64}(\.[a-z]+)?$")


def _place(tag: ObservedTag) -> Place:
    return tag.registry, tag.repository, tag.tag, tag.digest


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What applying a plan did: jobs queued for copies, removals done, refused or left."""

    jobs: tuple[Job, ...] = ()
    removed: tuple[PlanAction, ...] = ()
    refused: tuple[tuple[PlanAction, str], ...] = ()  # (action, why it was not executed)
    stopped: str = ""  # non-empty: the run stopped removing early, and why

    def to_json(self) -> dict[str, object]:
        """Return the report as a JSON object."""
        return {
            "jobs": [
                {"job_id": j.job_id, "destination": j.destination, "state": j.state.value}
                for j in self.jobs
            ],
            "removed": [a.to_json() for a in self.removed],
            "refused": [{**a.to_json(), "refused": why} for a, why in self.refused],
            "stopped": self.stopped,
        }


class _Metrics:
    """The reconciler's metric families: plan sizes (drift), runs, the last successful run."""

    def __init__(self, registry: CollectorRegistry) -> None:
        p = f"{METRIC_PREFIX}reconcile_"
        self.actions = Gauge(
            f"{p}plan_actions", "Actions of the last plan by kind (copy/retag/remove/cleanup: drift).",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.bytes = Gauge(
            f"{p}plan_bytes", "Bytes of the last plan: to copy, and freed.", ["what"],
            registry=registry,
        )  # fmt: skip
        self.degraded = Gauge(
            f"{p}plan_degraded_decisions", "Decisions of the last plan the fail mode answered.",
            registry=registry,
        )  # fmt: skip
        self.runs = Counter(
            f"{p}runs", "Reconcile runs by mode and outcome.", ["mode", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.last_success = Gauge(
            f"{p}last_success_timestamp_seconds", "When a reconcile run last finished cleanly.",
            ["mode"], registry=registry,
        )  # fmt: skip
        self.revision_actions = Gauge(
            f"{p}revision_plan_actions",
            "Actions of the last activation re-plan (only images the new revision changes).",
            ["kind"], registry=registry,
        )  # fmt: skip
        self.revision_images = Gauge(
            f"{p}revision_plan_images",
            "Images of the last activation re-plan: decided, and changed by the new revision.",
            ["what"], registry=registry,
        )  # fmt: skip

    def replanned(self, plan: Plan) -> None:
        for kind, count in plan.counts().items():
            self.revision_actions.labels(kind=kind).set(count)
        self.revision_images.labels(what="decided").set(plan.decided)
        self.revision_images.labels(what="changed").set(plan.images)

    def planned(self, plan: Plan) -> None:
        for kind, count in plan.counts().items():
            self.actions.labels(kind=kind).set(count)
        self.bytes.labels(what="to_copy").set(plan.bytes_to_copy)
        self.bytes.labels(what="freed").set(plan.bytes_freed)
        self.degraded.set(plan.degraded)

    def finished(self, mode: str, report: ApplyReport | None) -> None:
        clean = report is None or (
            not report.stopped and all(j.state.value == "succeeded" for j in report.jobs)
        )
        self.runs.labels(mode=mode, outcome="ok" if clean else "incomplete").inc()
        if clean:
            self.last_success.labels(mode=mode).set(time.time())


class Reconciler:
    """Brings the registries in scope to what the policy decides for every source image."""

    def __init__(
        self,
        config: Config,
        *,
        observer: Observer,
        decisions: DecisionService,
        queries: BatchEngine | None = None,
        jobs: JobQueue | None = None,
        remover: Remover | None = None,
        wait: bool = True,
        wait_timeout_s: float = 600.0,
        leases: Leases | None = None,
        owner: str = "reconciler",
        metrics_registry: CollectorRegistry | None = None,
        candidates: CandidateFactory | None = None,
        copies: Placements | None = None,
        on_decided: Callable[[Sequence[PolicyInput]], Awaitable[None]] | None = None,
        baselines: ReconcileBaselines | None = None,
    ) -> None:
        """``copies``: the job store's record of what the sidecar copied where, so a retag never
        overwrites a digest someone else wrote (without it, every retag goes ahead).
        ``on_decided``: given the inputs of every plan under the serving policy (the scan
        expiry trigger learns its instants from them). ``baselines``: where each revision's
        outcomes are kept beyond this process (the job store), for activation re-plans."""
        self._config = config
        self._copies = copies
        self._settings = config.policy.reconcile
        self._observer = observer
        self._decisions = decisions
        self._queries = queries
        self._jobs = jobs
        self._remover = remover
        self._wait = wait
        self._wait_timeout_s = wait_timeout_s
        self._leases = leases
        self._owner = owner
        self._scope = Scope(self._settings)
        self._metrics = _Metrics(metrics_registry or CollectorRegistry())
        self._candidates = candidates
        # One spare OPA at a time: each preview starts an OPA process and lists the registries.
        self._previewing = asyncio.Lock()
        # Outcomes per revision of the serving policy's runs, this process's and (through the
        # job store) every replica's before it (shared with scoped copies): an activation
        # re-plans only the images whose outcome the new revision changes.
        self._baselines = Baselines(baselines)
        self._on_decided = on_decided

    def scoped(self, *, sources: Sequence[str], repositories: Sequence[str]) -> Reconciler:
        """This reconciler narrowed to ``sources`` and repository globs (a legacy rule's scope).

        It shares the clients, decisions, store, leases, remover and metric families.
        """
        settings = dataclasses.replace(
            self._settings, sources=tuple(sources), repositories=tuple(repositories)
        )
        other = copy.copy(self)
        other._settings = settings
        other._scope = Scope(settings)
        other._observer = self._observer.scoped(settings)
        return other

    @property
    def sources(self) -> tuple[str, ...]:
        """The source registries (``policy.reconcile.sources``)."""
        return self._settings.sources

    def _observed_registries(self) -> list[str]:
        chosen = self._settings.registries or tuple(r.name for r in self._config.registries)
        return list(dict.fromkeys((*self.sources, *chosen)))

    async def plan(self, *, progress: Progress | None = None) -> Plan:
        """Observe, decide every source image in scope, and return the plan (changes nothing)."""
        return (await self.observe_and_plan(progress=progress))[0]

    async def run(
        self, *, dry_run: bool = True, progress: Progress | None = None, since: str = ""
    ) -> tuple[Plan, ApplyReport | None]:
        """Plan, then unless ``dry_run`` apply it: copies as durable jobs, then removals.

        Applying holds the store's ``reconcile-apply`` lease from before observing until the
        last job ended: of two applying runs (replicas, the CLI, the schedule) one waits for
        nothing and the other fails with ReconcileBusy. ``since``: see :meth:`observe_and_plan`.
        """
        mode = "dry_run" if dry_run else "apply"
        try:
            if dry_run:
                plan, _ = await self.observe_and_plan(progress=progress, since=since)
                report = None
            else:
                async with self._applying():
                    plan, observation = await self.observe_and_plan(progress=progress, since=since)
                    report = await self._apply(plan, observation, progress=progress)
        except BaseException:
            self._metrics.runs.labels(mode=mode, outcome="error").inc()
            raise
        self._metrics.finished(mode, report)
        return plan, report

    async def apply(
        self, plan: Plan, observation: Observation, *, progress: Progress | None = None
    ) -> ApplyReport:
        """Apply a plan made by :meth:`observe_and_plan` (holding the apply lease meanwhile)."""
        async with self._applying():
            report = await self._apply(plan, observation, progress=progress)
        self._metrics.finished("apply", report)
        return report

    @contextlib.asynccontextmanager
    async def _applying(self) -> AsyncIterator[None]:
        if self._leases is None:
            yield
            return
        # One owner per run: two runs of one process (the schedule and an RPC) exclude each other.
        owner = f"{self._owner}/{uuid.uuid4().hex[:8]}"
        async with held(self._leases, APPLY_LEASE, owner, ttl_s=self._settings.lease_s) as mine:
            if not mine:
                raise ReconcileBusy(
                    "another reconcile is applying a plan (the job store's reconcile-apply "
                    "lease is held); try again when it has finished"
                )
            yield

    async def _apply(
        self, plan: Plan, observation: Observation, *, progress: Progress | None = None
    ) -> ApplyReport:
        with _tracer.start_as_current_span("reconcile.apply") as span:
            jobs = await self.enqueue_copies(plan)
            span.set_attribute("reconcile.jobs", len(jobs))
            if progress is not None:
                progress("copies queued", len(jobs), len(jobs))
            if self._wait and jobs:
                jobs = await self._wait_jobs(jobs)
            removed: list[PlanAction] = []
            refused: list[tuple[PlanAction, str]] = []
            stopped = ""
            if self._remover is not None and plan.of("remove", "cleanup"):
                removed, refused, stopped = await self._remover.apply(
                    plan, observation, copies=jobs if self._wait else None
                )
            span.set_attribute("reconcile.removed", len(removed))
        _log.info(
            "reconcile applied",
            jobs=len(jobs),
            removed=len(removed),
            refused=len(refused),
            stopped=stopped,
        )
        return ApplyReport(tuple(jobs), tuple(removed), tuple(refused), stopped)

    async def _wait_jobs(self, jobs: Sequence[Job]) -> list[Job]:
        if self._jobs is None:
            return list(jobs)
        return await settle(self._jobs, jobs, timeout_s=self._wait_timeout_s)

    async def observe_and_plan(
        self, *, progress: Progress | None = None, since: str = ""
    ) -> tuple[Plan, Observation]:
        """Observe, decide and plan; return the plan and the observation it was made from.

        ``since`` (an activation's previous revision): every source image is decided again,
        but only those whose outcome (allowed, routed places, removals) differs from the one
        this reconciler decided under ``since`` are planned — and so applied — with the
        cleanups that were not asked under ``since``. Without a record of ``since`` (no run
        under it in this process) the plan is whole.
        """
        if not self.sources:
            raise InvalidArgument(
                "policy.reconcile.sources", "names no source registry: nothing to reconcile"
            )
        with _tracer.start_as_current_span("reconcile.plan") as span:
            started = time.perf_counter()
            observation = await self._observer.observe(
                self._observed_registries(), progress=progress
            )
            span.set_attribute("reconcile.tags_observed", len(observation.tags))
            plan = await self._plan_on(
                observation, self._decisions, self._queries, progress, since=since, record=True
            )
            if plan.changed_since:
                # The drift gauges keep describing the last whole plan.
                self._metrics.replanned(plan)
                span.set_attribute("reconcile.changed_since", plan.changed_since)
            else:
                self._metrics.planned(plan)
            span.set_attribute("reconcile.images", plan.images)
            for kind, count in plan.counts().items():
                span.set_attribute(f"reconcile.{kind}", count)
        _log.info(
            "reconcile planned",
            images=plan.images,
            decided=plan.decided,
            changed_since=plan.changed_since,
            counts=plan.counts(),
            bytes_to_copy=plan.bytes_to_copy,
            bytes_freed=plan.bytes_freed,
            unreadable=sorted(plan.unreadable),
            requests=observation.requests,
            duration_s=round(time.perf_counter() - started, 3),
        )
        return plan, observation

    async def preview(self, candidate: bytes, *, progress: Progress | None = None) -> Preview:
        """Plan under the serving policy and under ``candidate`` (a bundle .tar.gz); apply nothing.

        The candidate is verified like a publish and served by a spare OPA for the call (never
        the serving one); the registries are observed once and both plans are made from that
        observation, so the impact is only the policy's. The drift metrics are not touched.
        """
        if self._candidates is None:
            raise PolicyError("reconcile: no spare OPA is wired for an impact preview")
        if not self.sources:
            raise InvalidArgument(
                "policy.reconcile.sources", "names no source registry: nothing to reconcile"
            )
        if self._previewing.locked():
            raise ReconcileBusy("another impact preview is running; try again when it has finished")
        async with self._previewing, self._candidates(candidate) as policy:
            # Verified and started first: a refused candidate costs no registry listing.
            with _tracer.start_as_current_span("reconcile.preview") as span:
                observation = await self._observer.observe(
                    self._observed_registries(), progress=progress
                )
                before = await self._plan_on(observation, self._decisions, self._queries, progress)
                after = await self._plan_on(observation, policy.decisions, policy.queries, progress)
                impact = compare(before, after)
                span.set_attribute("reconcile.preview.changes", len(impact.changes))
        _log.info(
            "reconcile previewed",
            candidate_revision=policy.revision,
            serving_revision=before.bundle_revision,
            changes=impact.totals(),
        )
        return Preview(before, after, impact)

    async def _plan_on(
        self,
        observation: Observation,
        decisions: DecisionService,
        queries: BatchEngine | None,
        progress: Progress | None,
        *,
        since: str = "",
        record: bool = False,
    ) -> Plan:
        """Decide every source image of ``observation`` with ``decisions`` and plan.

        ``record``: remember the outcomes per revision (the serving policy's runs, never a
        candidate's); ``since``: plan only what changed since that revision's record.
        """
        images = await self.decide(observation, progress=progress, decisions=decisions)
        cleanups = await self._cleanups(images, observation, queries)
        decided = len(images)
        baseline = await self._baselines.get(since) if since else None
        if record:
            await self._baselines.record(
                ((_place(i.tag), i.result) for i in images),
                (
                    (c.bundle_revision, (c.registry, c.repository, c.tag, c.digest))
                    for c in cleanups
                ),
            )
            if self._on_decided is not None:
                await self._on_decided([i.result.input for i in images if i.result.input])
        if baseline is not None:
            images = [i for i in images if _changed(baseline, i)]
            cleanups = [
                c for c in cleanups if (c.registry, c.repository, c.tag, c.digest)
                not in baseline.cleanups
            ]  # fmt: skip
        written = await self._written(images, observation)
        plan = build_plan(
            images, observation, self._scope, self.sources, cleanups=cleanups, written=written
        )
        return dataclasses.replace(
            plan, changed_since=since if baseline is not None else "", decided=decided
        )

    async def _written(
        self, images: Sequence[SourceImage], observation: Observation
    ) -> set[tuple[str, str, str, str]] | None:
        """What the sidecar copied to the routed tags that now hold another digest (retag
        candidates only: one store query per source tag with such a route)."""
        if self._copies is None:
            return None
        asked: set[tuple[str, str, str]] = set()
        for image in images:
            src = image.tag
            for route in image.result.decision.routes if image.result.decision.allow else ():
                held = observation.at(route.registry, route.repository, route.tag)
                if held is not None and held.digest != src.digest:
                    asked.add((src.registry, src.repository, route.tag))
        written: set[tuple[str, str, str, str]] = set()
        for registry, repository, tag in sorted(asked):
            for digest, dest, dest_repository, dest_tag in await self._copies.copies_made(
                registry, repository, tag=tag
            ):
                written.add((dest, dest_repository, dest_tag, digest))
        return written

    async def decide(
        self,
        observation: Observation,
        *,
        progress: Progress | None = None,
        decisions: DecisionService | None = None,
    ) -> list[SourceImage]:
        """Decide every source image of ``observation`` (event ``reconcile``), in batches.

        Each chunk goes to OPA once enriched, ``batch_concurrency`` queries at a time, while
        the next chunk is enriched; inputs of tenants wait for their measured usage
        (``reconcile/bulk.py``). ``decisions``: the serving policy's unless given (an impact
        preview's candidate).
        """
        originals = [
            t
            for t in observation.tags
            if t.registry in self.sources and not _REFERRER_TAG.match(t.tag)
        ]
        results = await decide_all(
            originals,
            observation,
            sources=self.sources,
            decisions=decisions or self._decisions,
            settings=self._settings,
            limits=self._config.policy.tenancy.usage,
            progress=progress,
        )
        return [SourceImage(t, r) for t, r in zip(originals, results, strict=True)]

    async def _cleanups(
        self,
        images: Sequence[SourceImage],
        observation: Observation,
        queries: BatchEngine | None,
    ) -> list[PlanAction]:
        """Ask the retention policy about each tenant's copies (none when it has no package)."""
        if queries is None:
            return []
        by_tenant: dict[str, list[SourceImage]] = {}
        for image in images:
            facts = image.result.input.image if image.result.input else None
            if facts is not None and facts.tenant:
                by_tenant.setdefault(facts.tenant, []).append(image)
        usage = self._config.policy.tenancy.usage
        measured = measured_usage(
            [i.result.input for i in images if i.result.input is not None],
            observation,
            self.sources,
        )
        planned: list[PlanAction] = []
        for tenant, owned in sorted(by_tenant.items()):
            digests = {i.tag.digest: i for i in owned}
            copies = sorted(
                (
                    t
                    for digest in digests
                    for t in observation.holding(digest)
                    if t.registry not in self.sources
                ),
                key=lambda t: (t.registry, t.repository, t.tag),
            )
            limit = usage[tenant].storage_limit_bytes if tenant in usage else 0
            doc = {
                "now": owned[0].result.input.now if owned[0].result.input else "",
                "tenant": {
                    "id": tenant,
                    "storage_used_bytes": measured.get(tenant, 0),
                    "storage_limit_bytes": limit,
                },
                "images": [
                    {
                        "registry": t.registry,
                        "repository": t.repository,
                        "tag": t.tag,
                        "digest": t.digest,
                        "created_at": _created(digests[t.digest]),
                        "size_bytes": t.size_bytes,
                        "pulls": 0,
                        "last_pulled_at": None,
                    }
                    for t in copies
                ],
            }
            try:
                answer, revision, _ = await queries.query(
                    RETENTION_PATH, doc, timeout_s=self._settings.batch_timeout_s
                )
            except PolicyError as exc:
                # No retention package in this bundle (or it is broken): plan no cleanups.
                _log.info("reconcile: no retention answer", tenant=tenant, error=exc.message)
                return []
            except PolicyUnavailable:
                return []  # a cleanup is never planned without the policy's word
            if isinstance(answer, dict):
                planned += cleanup_actions(
                    answer, observation, self._scope, self.sources,
                    decision_of=digests, bundle_revision=revision,
                )  # fmt: skip
        return planned

    async def enqueue_copies(self, plan: Plan) -> list[Job]:
        """Queue one durable copy job per ``copy``/``retag`` action (idempotent by destination)."""
        if self._jobs is None:
            raise PolicyError("reconcile: no job store to apply the plan to")
        # A blocked retag (someone else's digest at that tag) is shown, never executed.
        specs = [_spec(a) for a in plan.of("copy", "retag") if not a.blocked]
        if not specs:
            return []
        # requeue: the destination was observed lacking the image, an earlier success is stale.
        return await self._jobs.requeue(specs)


def _changed(baseline: Baseline, image: SourceImage) -> bool:
    """True unless ``image`` had the same outcome under the baseline's revision."""
    decided = outcome(image.result)
    if decided is None:
        return True  # a degraded answer is no verdict: planned as a whole plan would
    return baseline.outcomes.get(_place(image.tag)) != decided


def _spec(action: PlanAction) -> JobSpec:
    source, _, digest = action.source.partition("@")
    registry, _, path = source.partition("/")
    repository, _, tag = path.rpartition(":")
    # What a worker decides again should the bundle revision change before the copy runs.
    request = DecideRequest(
        image=ImageRef(registry, repository, tag, digest),
        event="reconcile",
        caller=RECONCILER,
        size_bytes=action.size_bytes,
    )
    return JobSpec(
        source_registry=registry,
        source_repository=repository,
        digest=digest,
        destination_registry=action.registry,
        destination_repository=action.repository,
        tag=action.tag,
        priority=action.priority,
        decision_id=action.decision_id,
        bundle_revision=action.bundle_revision,
        rank=action.rank,
        request=request_to_json(request),
    )


def _created(image: SourceImage) -> str | None:
    facts = image.result.input.image if image.result.input else None
    return facts.created_at if facts is not None else None

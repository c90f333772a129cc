"""The ``policy.reconcile`` section: what the reconciler observes, decides and may remove."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationInfo

from sidecar.config._cron import Cron
from sidecar.config._glob import glob_regex
from sidecar.config._model import Bool, Duration, Int, NonEmpty, Str, read_record
from sidecar.config._read import Node

__all__ = ["ReconcileSettings", "parse_reconcile"]


def _registry(name: str, info: ValidationInfo) -> str:
    registries: Collection[str] = info.context["registries"] if info.context else ()
    if name not in registries:
        raise ValueError(f"unknown registry {name!r} (registries: {sorted(registries)})")
    return name


def _cron(expression: str) -> str:
    if expression:
        Cron.parse(expression)  # its ValueError is the problem
    return expression


def _glob(pattern: str) -> str:
    glob_regex(pattern)  # its ValueError is the problem
    return pattern


_Registry = Annotated[NonEmpty, AfterValidator(_registry)]
_Glob = Annotated[NonEmpty, AfterValidator(_glob)]


@dataclass(frozen=True, slots=True)
class ReconcileSettings:
    """Scope and safety of ``policy-sidecar reconcile`` / the ``Reconcile`` RPC (docs/reconcile.md)."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    # Registries whose images are the originals: each of their tags is decided (event reconcile).
    # A source registry is never written to nor removed from by the reconciler.
    sources: tuple[_Registry, ...] = ()
    # Registries observed for copies (image.present_at); empty: every inventory registry. Only
    # registries named in the inventory are ever listed.
    registries: tuple[_Registry, ...] = ()
    # Repository globs (Freightliner syntax, ``*`` does not cross ``/``); empty: every repository.
    repositories: tuple[_Glob, ...] = ()
    # Tag globs never removed, whatever the policy says.
    protect: tuple[_Glob, ...] = ()
    # Removals one run may execute; the run stops removing past it and says so.
    max_removals_per_run: Annotated[Int, Field(ge=0)] = 10
    # Policy inputs per OPA batch query (data.replication.batch.decisions).
    batch_size: Annotated[Int, Field(ge=1, le=5000)] = 200
    # Deadline of one batch query (and of a retention query) on OPA: a batch of hundreds of
    # inputs takes far longer than one decision's policy.opa.timeout_ms.
    batch_timeout_s: Annotated[Duration, Field(ge=0.1)] = 30.0
    # Batch queries in flight at once: OPA evaluates one query on one core, so two keep two
    # cores busy (docs/benchmarks.md, "Reconcile"); each still has batch_timeout_s.
    batch_concurrency: Annotated[Int, Field(ge=1, le=16)] = 2
    # Concurrent requests per registry while observing, and enrichments at once while deciding
    # (the registry's rate limit applies too).
    concurrency: Annotated[Int, Field(ge=1, le=64)] = 4
    # How long an applying run waits for its copy and delete jobs before it reports them as
    # they stand (they go on in the worker pool).
    wait_s: Annotated[Duration, Field(ge=1)] = 600.0
    # When the serving sidecar reconciles by itself: 5-field cron, UTC ("" = never). One replica
    # runs each time (a lease in the job store); a time missed while none was up runs at start.
    schedule: Annotated[Str, AfterValidator(_cron)] = ""
    # Scheduled runs execute their plan (else they only plan and log it).
    scheduled_apply: Bool = False
    # What a bundle revision activation triggers: a reconcile that only plans (and logs and
    # meters the plan), one that applies it, or nothing. One replica runs it per revision.
    on_revision: Literal["plan", "apply", "off"] = "plan"
    # What a scan expiring triggers (its completed_at + the bundle's maximum scan age, learned
    # from the policy after each plan): a plan, an applying run, or nothing. Off by default:
    # an expiry only withholds copies (SCAN_EXPIRED removes nothing), which the next scheduled,
    # revision or on-demand run decides anyway, and enabling it costs a plan at each start and
    # one policy query per batch of every plan. One replica runs each expiry time.
    on_scan_expiry: Literal["plan", "apply", "off"] = "off"
    # Expiries within one window of this many seconds (aligned on the epoch, the same on every
    # replica) run once, at the window's end: a CI batch scanned together expires together.
    scan_expiry_coalesce_s: Annotated[Duration, Field(ge=0, le=86_400)] = 60.0
    # The job-store leases of a run (one applying run, one scheduled run at a time): renewed
    # every third of this while it runs; a killed run frees its lease this long after.
    lease_s: Annotated[Duration, Field(ge=1)] = 60.0
    # Bounds of one observation: repositories per registry and tags per repository.
    max_repositories: Annotated[Int, Field(ge=1)] = 10_000
    max_tags: Annotated[Int, Field(ge=1)] = 100_000


def parse_reconcile(node: Node, registries: Collection[str]) -> ReconcileSettings:
    """Parse ``policy.reconcile``; registry names must be in the inventory."""
    return read_record(ReconcileSettings, node, context={"registries": registries})

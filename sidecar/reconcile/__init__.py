"""Reconcile use case: observe the registries → decide every source image → plan → apply.

:class:`Reconciler` runs one pass; :class:`Plan` is its value (actions ``copy``, ``retag``,
``keep``, ``remove``, ``cleanup`` with totals), printed by ``policy-sidecar reconcile`` and
streamed by the ``Reconcile`` RPC; :meth:`Reconciler.preview` diffs the plans of the serving
policy and a candidate bundle (:class:`Impact`). See docs/reconcile.md.
"""

from __future__ import annotations

from sidecar.reconcile.artifact_registry import (
    ArtifactRegistryLister,
    artifact_registry_listers,
    is_artifact_registry,
)
from sidecar.reconcile.bulk import RECONCILER, batch_spans, present_at
from sidecar.reconcile.ecr import EcrLister, ecr_listers
from sidecar.reconcile.expiry import EXPIRY_LEASE, EXPIRY_PATH, ExpiryTrigger
from sidecar.reconcile.jobs import settle, waiter
from sidecar.reconcile.observe import Observation, ObservedTag, Observer, Progress, Scope
from sidecar.reconcile.plan import KINDS, Plan, PlanAction, SourceImage, build_plan
from sidecar.reconcile.preview import (
    CHANGE_KINDS,
    CandidateFactory,
    CandidatePolicy,
    Change,
    Impact,
    Preview,
    compare,
)
from sidecar.reconcile.remove import Remover
from sidecar.reconcile.schedule import LEASE, Scheduler, scheduled
from sidecar.reconcile.service import (
    APPLY_LEASE,
    RETENTION_PATH,
    ApplyReport,
    Reconciler,
)
from sidecar.reconcile.trigger import REVISION_LEASE, RevisionTrigger, TriggerMetrics

__all__ = [
    "APPLY_LEASE",
    "CHANGE_KINDS",
    "EXPIRY_LEASE",
    "EXPIRY_PATH",
    "KINDS",
    "LEASE",
    "RECONCILER",
    "RETENTION_PATH",
    "REVISION_LEASE",
    "ApplyReport",
    "ArtifactRegistryLister",
    "CandidateFactory",
    "CandidatePolicy",
    "Change",
    "EcrLister",
    "ExpiryTrigger",
    "Impact",
    "Observation",
    "ObservedTag",
    "Observer",
    "Plan",
    "PlanAction",
    "Preview",
    "Progress",
    "Reconciler",
    "Remover",
    "RevisionTrigger",
    "Scheduler",
    "Scope",
    "SourceImage",
    "TriggerMetrics",
    "artifact_registry_listers",
    "batch_spans",
    "build_plan",
    "compare",
    "ecr_listers",
    "is_artifact_registry",
    "present_at",
    "scheduled",
    "settle",
    "waiter",
]

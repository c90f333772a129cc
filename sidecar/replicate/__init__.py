"""Replication use case: decide, then enqueue durable copy jobs run by the worker pool."""

from __future__ import annotations

from sidecar.model.jobs import (
    TERMINAL_STATES,
    CopyPlan,
    CopyProgress,
    CopyResult,
    Job,
    JobSpec,
    JobState,
    ProgressCallback,
)
from sidecar.replicate.service import ReplicationService

__all__ = [
    "TERMINAL_STATES",
    "CopyPlan",
    "CopyProgress",
    "CopyResult",
    "Job",
    "JobSpec",
    "JobState",
    "ProgressCallback",
    "ReplicationService",
]

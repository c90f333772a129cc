"""Replication: OCI registry client, image copier, durable job store and worker pool."""

from __future__ import annotations

from sidecar.replicate.model import (
    TERMINAL_STATES,
    CopyPlan,
    CopyProgress,
    CopyResult,
    Job,
    JobSpec,
    JobState,
    ProgressCallback,
)

__all__ = [
    "TERMINAL_STATES",
    "CopyPlan",
    "CopyProgress",
    "CopyResult",
    "Job",
    "JobSpec",
    "JobState",
    "ProgressCallback",
]

"""When a claimed copy is decided again: a revision change, or a decision older than the bound.

The decision service here only records that it was asked and answers "OPA unavailable" (the job
then runs on its decision, counted as ``error``): what matters is whether the guard asked, and
under which trigger it counted. The real re-decisions run in tests/e2e/test_reconcile_triggers.py.
"""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from sidecar.errors import PolicyUnavailable
from sidecar.model.decision import Caller, DecideRequest, ImageRef
from sidecar.model.jobs import Job, JobSpec, JobState
from sidecar.replicate.deferred import request_to_json
from sidecar.replicate.redecide import RevisionGuard

DIGEST = "sha256:" + "a" * 64
DECIDED = "2026-06-01T12:00:00.000000Z"


class _Unavailable:
    """Counts the requests it is asked, and answers each with PolicyUnavailable."""

    def __init__(self) -> None:
        self.asked = 0

    async def decide(self, request: DecideRequest) -> None:
        self.asked += 1
        raise PolicyUnavailable("down for the test")


def _job(
    *, claimed: str, decided: str = DECIDED, created: str = DECIDED, revision: str = "r1"
) -> Job:
    request = DecideRequest(
        image=ImageRef("ci", "web/app", "v1", DIGEST), event="push", caller=Caller("ci")
    )
    spec = JobSpec("ci", "web/app", DIGEST, "eu", "web/app", "v1", bundle_revision=revision,
                   request=request_to_json(request))  # fmt: skip
    return Job("j1", spec, JobState.RUNNING, created_at=created, updated_at=claimed,
               decided_at=decided)  # fmt: skip


async def _asked(job: Job, *, max_age_s: float, active: str = "r1") -> tuple[int, dict[str, float]]:
    decisions, metrics = _Unavailable(), CollectorRegistry()
    guard = RevisionGuard(decisions, None, lambda: active, max_age_s=max_age_s,  # type: ignore[arg-type]
                          metrics_registry=metrics)  # fmt: skip
    assert await guard.redecide(job, "w1") == ""  # OPA unavailable: runs on its decision
    counted = {
        trigger: metrics.get_sample_value(
            "policy_sidecar_replication_jobs_redecided_total",
            {"trigger": trigger, "outcome": "error"},
        )
        or 0.0
        for trigger in ("age", "revision")
    }
    return decisions.asked, {k: v for k, v in counted.items() if v}


@pytest.mark.parametrize(
    ("claimed", "max_age_s", "asked"),
    [
        ("2026-06-01T12:04:59.000000Z", 300, 0),  # 299 s old: its decision stands
        ("2026-06-01T12:05:01.000000Z", 300, 1),  # 301 s old: decided again
        ("2027-06-01T12:00:00.000000Z", 0, 0),  # a year old, but the bound is off
    ],
)
async def test_a_decision_older_than_the_bound_is_asked_again(
    claimed: str, max_age_s: float, asked: int
) -> None:
    count, triggers = await _asked(_job(claimed=claimed), max_age_s=max_age_s)
    assert count == asked
    assert triggers == ({"age": 1.0} if asked else {})


async def test_a_job_from_before_decision_times_is_aged_from_its_creation() -> None:
    old = _job(claimed="2026-06-01T12:10:00.000000Z", decided="")
    assert await _asked(old, max_age_s=300) == (1, {"age": 1.0})
    recent = dataclasses.replace(old, created_at="2026-06-01T12:09:00.000000Z")
    assert await _asked(recent, max_age_s=300) == (0, {})


async def test_a_revision_change_is_the_trigger_even_for_a_fresh_decision() -> None:
    fresh = _job(claimed=DECIDED, revision="r0")
    assert await _asked(fresh, max_age_s=300, active="r1") == (1, {"revision": 1.0})


async def test_unreadable_store_times_never_trigger_by_age() -> None:
    assert await _asked(_job(claimed="not a time"), max_age_s=1) == (0, {})

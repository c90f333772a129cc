"""The per-identity rate limiter and the refusal audit's aggregation, on a driven clock.

The refusal audit writes to a real hash-chained audit log in SQLite, so the chain is checked with
the same ``verify`` that ``policy-sidecar audit verify`` runs.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.audit import AuditEvent, AuditTrail, RefusalAudit, RefusalWindow, open_audit_log
from sidecar.errors import ErrorCode, InvalidArgument, ResourceExhausted
from sidecar.governance import CallRateLimiter, RateLimit, peer_bucket
from sidecar.governance._workers import BundleWorkers
from sidecar.governance.ratelimit import rate_limited_counter


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _limiter(clock: FakeClock, **shape: int) -> tuple[CallRateLimiter, CollectorRegistry]:
    registry = CollectorRegistry()
    limit = RateLimit(
        rate=2.0,
        burst=shape.get("burst", 3),
        max_identities=shape.get("max_identities", 100),
        config_key="policy.admin.rate_limit",
    )
    limiter = CallRateLimiter(
        limit, surface="admin", metric=rate_limited_counter(registry), clock=clock
    )
    return limiter, registry


def test_a_bucket_per_identity_refuses_over_the_burst_and_refills_at_the_rate() -> None:
    clock = FakeClock()
    limiter, registry = _limiter(clock)
    assert [limiter.try_acquire("token:ci") for _ in range(4)] == [True, True, True, False]
    assert limiter.try_acquire("token:other")  # another identity has its own bucket
    clock.advance(0.5)  # 2/s: one call back
    assert limiter.try_acquire("token:ci")
    assert not limiter.try_acquire("token:ci")
    for _ in range(3):
        limiter.check("peer:10.0.0.7", "ListRevisions")
    with pytest.raises(ResourceExhausted) as refused:
        limiter.check("peer:10.0.0.7", "ListRevisions")
    assert refused.value.code is ErrorCode.RESOURCE_EXHAUSTED
    assert "policy.admin.rate_limit" in refused.value.message
    assert "2 calls/s (burst 3)" in refused.value.message
    value = registry.get_sample_value(
        "policy_sidecar_rate_limited_calls_total",
        {"surface": "admin", "caller": "authenticated"},
    )
    assert value == 2
    assert (
        registry.get_sample_value(
            "policy_sidecar_rate_limited_calls_total",
            {"surface": "admin", "caller": "unauthenticated"},
        )
        == 1
    )


def test_memory_is_bounded_by_max_identities() -> None:
    limiter, _ = _limiter(FakeClock(), max_identities=10)
    for n in range(1000):
        limiter.try_acquire(f"peer:10.0.{n // 256}.{n % 256}")
    assert len(limiter) == 10


@pytest.mark.parametrize(
    ("peer", "bucket"),
    [
        ("ipv4:10.0.0.7:51234", "peer:10.0.0.7"),
        ("ipv4:127.0.0.1:1", "peer:127.0.0.1"),
        ("ipv6:[2001:db8::1]:443", "peer:2001:db8::/64"),
        ("ipv6:[2001:db8::ffff:1]:443", "peer:2001:db8::/64"),
        ("unix:/run/sidecar.sock", "peer:unix:/run/sidecar.sock"),
    ],
)
def test_unauthenticated_callers_are_keyed_by_their_address(peer: str, bucket: str) -> None:
    assert peer_bucket(peer) == bucket


async def test_refusals_over_the_window_budget_become_one_summary_row(tmp_path: Path) -> None:
    clock = FakeClock()
    log = await open_audit_log(f"sqlite:///{tmp_path / 'jobs.db'}")
    trail = AuditTrail(log, CollectorRegistry())
    refusals = RefusalAudit(trail, RefusalWindow(per_window=3, window_s=60), clock=clock)
    try:
        for n in range(50):
            await refusals.refused(
                "peer:10.0.0.7",
                AuditEvent(f"peer:ipv4:10.0.0.7:{n}", "ListRevisions", "unauthenticated"),
            )
        await refusals.refused("token:ci", AuditEvent("token:ci", "PublishBundle", "denied"))
        assert len(await log.list(limit=100)) == 4  # 3 + the other caller's first refusal
        clock.advance(61)  # the window ended: the next refusal writes the summary first
        await refusals.refused(
            "peer:10.0.0.7", AuditEvent("peer:ipv4:10.0.0.7:1", "ListRevisions", "rate_limited")
        )
        records = await log.list(limit=100)
        summaries = [r.event for r in records if r.event.outcome == "suppressed"]
        assert len(summaries) == 1
        summary = summaries[0]
        assert (summary.actor, summary.action) == ("peer:10.0.0.7", "ListRevisions")
        assert re.match(r"47 more refused calls by peer:10\.0\.0\.7 between ", summary.detail)
        assert "47 ListRevisions unauthenticated" in summary.detail
        assert "policy.admin.audit_refusals" in summary.detail
        assert len(records) == 6  # 4 single + the summary + the new window's first
        verified = await log.verify()
        assert verified.ok, verified.problems
    finally:
        await refusals.close()
        await log.close()


async def test_held_back_refusals_are_written_at_close_and_many_keys_stay_bounded(
    tmp_path: Path,
) -> None:
    log = await open_audit_log(f"sqlite:///{tmp_path / 'jobs.db'}")
    trail = AuditTrail(log, CollectorRegistry())
    window = RefusalWindow(per_window=2, window_s=60, max_rows_per_window=10, max_keys=5)
    refusals = RefusalAudit(trail, window, clock=FakeClock())
    try:
        for n in range(200):  # 200 addresses, 2 refusals each
            for _ in range(2):
                await refusals.refused(
                    f"peer:10.0.0.{n}",
                    AuditEvent(f"peer:ipv4:10.0.0.{n}:9", "GetAuditLog", "unauthenticated"),
                )
        await refusals.close()
        records = await log.list(limit=1000)
        single = [r for r in records if r.event.outcome == "unauthenticated"]
        summaries = [r.event for r in records if r.event.outcome == "suppressed"]
        assert len(single) == 10  # max_rows_per_window
        counted = sum(int(s.detail.split(" ", 1)[0]) for s in summaries)
        assert len(single) + counted == 400
        assert len(summaries) <= 2  # the overflow key (evicted and summarised at most once more)
        assert (await log.verify()).ok
    finally:
        await log.close()


def _refuse(field: str) -> None:
    raise InvalidArgument(field, "refused in a worker process")


async def test_bundle_workers_raise_a_workers_sidecar_error_as_itself() -> None:
    workers = BundleWorkers(1)
    try:
        assert await workers.run(sum, (1, 2, 3)) == 6
        with pytest.raises(InvalidArgument) as refused:
            await workers.run(_refuse, "bundle")
        assert refused.value.field == "bundle"
        assert refused.value.message == "bundle: refused in a worker process"
        assert refused.value.code is ErrorCode.INVALID_ARGUMENT
    finally:
        await workers.close()


async def test_a_bundle_job_past_its_deadline_is_refused_and_the_workers_start_again() -> None:
    workers = BundleWorkers(1, timeout_s=15, timeout_key="policy.admin.parse_timeout_s")
    try:
        started = time.monotonic()
        with pytest.raises(ResourceExhausted) as refused:
            await workers.run(time.sleep, 300)
        assert time.monotonic() - started < 60
        assert refused.value.code is ErrorCode.RESOURCE_EXHAUSTED
        assert "policy.admin.parse_timeout_s" in refused.value.message
        assert await workers.run(sum, (1, 2)) == 3
    finally:
        await workers.close()

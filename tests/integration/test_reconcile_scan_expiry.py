"""The scan expiry trigger (``policy.reconcile.on_scan_expiry``): the instants come from the real
bundle on a managed OPA (data.replication.expiry), the runs are leased and recorded in a real job
store — SQLite and PostgreSQL, two store connections standing for two replicas. The clock is
injected, so "the instant has come" is a value, not a wait."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from sidecar.app.policy import PolicyRuntime, policy_runtime
from sidecar.config import load_config
from sidecar.errors import ReconcileBusy
from sidecar.model.decision import ImageFacts, ImageRef, PolicyInput, ScanFacts
from sidecar.reconcile import EXPIRY_LEASE, ExpiryTrigger, TriggerMetrics
from sidecar.store import SqlJobStore, open_job_store
from tests.support.fuzz import CASES_CONFIG
from tests.support.sidecar import isolated_config

pytestmark = [pytest.mark.integration, pytest.mark.store_backends("sqlite", "postgresql")]

_NS = 1_000_000_000
_DAY_NS = 86_400 * _NS
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
NOW_NS = int(NOW.timestamp()) * _NS


def _rfc3339(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _input(completed: dt.datetime | None, *, tag: str = "prod-1") -> PolicyInput:
    scan = ScanFacts("passed", _rfc3339(completed)) if completed is not None else None
    image = ImageFacts(ImageRef("ci", "web/app", tag, "sha256:" + "a" * 64), scan=scan)
    return PolicyInput(now=_rfc3339(NOW), event="reconcile", image=image, registries=())


def _expiry_ns(completed: dt.datetime) -> int:
    """completed_at + the bundle's default maximum scan age (7 days)."""
    return int(completed.timestamp()) * _NS + 7 * _DAY_NS


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[PolicyRuntime]:
    """The default bundle on a managed OPA (the case config's sidecar)."""
    config = isolated_config(load_config(CASES_CONFIG), tmp_path / "opa")
    async with policy_runtime(config) as running:
        yield running


class _Clock:
    """A wall clock the test moves (ns since the epoch)."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


class _Runs:
    """The reconciles a trigger started: ``dry_run`` of each; ``busy`` makes them refuse."""

    def __init__(self, *, busy: int = 0, pause_s: float = 0.0) -> None:
        self.dry_runs: list[bool] = []
        self.busy = busy
        self.pause_s = pause_s

    async def __call__(self, dry_run: bool) -> object:
        self.dry_runs.append(dry_run)
        await asyncio.sleep(self.pause_s)  # another replica tries meanwhile
        if self.busy:
            self.busy -= 1
            raise ReconcileBusy("another reconcile is applying a plan")
        return None


def _trigger(
    runs: _Runs,
    store: SqlJobStore,
    runtime: PolicyRuntime,
    clock: _Clock,
    *,
    mode: str = "apply",
    metrics: CollectorRegistry | None = None,
    owner: str = "one",
    **kwargs: float,
) -> ExpiryTrigger:
    assert runtime.opa is not None
    return ExpiryTrigger(
        runs, store, runtime.opa, mode=mode, owner=owner, lease_s=30,
        metrics=TriggerMetrics(metrics or CollectorRegistry()), clock_ns=clock, **kwargs,
    )  # fmt: skip


def _count(metrics: CollectorRegistry, outcome: str, trigger: str = "scan_expiry") -> float:
    value = metrics.get_sample_value(
        "policy_sidecar_reconcile_triggered_total",
        {"trigger": trigger, "mode": "apply", "outcome": outcome},
    )
    return value or 0.0


async def test_the_policy_names_the_earliest_expiry_ahead(
    store: SqlJobStore, runtime: PolicyRuntime
) -> None:
    metrics = CollectorRegistry()
    trigger = _trigger(_Runs(), store, runtime, _Clock(NOW_NS), metrics=metrics, batch_size=2)
    soon = NOW - dt.timedelta(days=7) + dt.timedelta(seconds=30)
    later = NOW - dt.timedelta(days=2)
    inputs = [
        _input(later, tag="a"),
        _input(None, tag="unscanned"),
        _input(NOW - dt.timedelta(days=9), tag="expired"),  # its instant is behind now
        _input(soon, tag="soon"),  # in the second batch of two
    ]
    await trigger.learn(inputs)
    assert trigger.next_ns == _expiry_ns(soon)
    gauge = metrics.get_sample_value("policy_sidecar_reconcile_next_scan_expiry_timestamp_seconds")
    assert gauge == _expiry_ns(soon) / _NS
    # A later plan knowing only later instants keeps the earliest.
    await trigger.learn([_input(later)])
    assert trigger.next_ns == _expiry_ns(soon)
    # Nothing ahead: nothing known.
    fresh = _trigger(_Runs(), store, runtime, _Clock(NOW_NS))
    await fresh.learn([_input(None), _input(NOW - dt.timedelta(days=8))])
    assert fresh.next_ns is None and fresh.due_ns() is None


async def test_the_run_comes_at_the_instant_and_coalesces_a_window(
    store: SqlJobStore, runtime: PolicyRuntime
) -> None:
    clock, runs, metrics = _Clock(NOW_NS), _Runs(), CollectorRegistry()
    trigger = _trigger(runs, store, runtime, clock, metrics=metrics, coalesce_s=60)
    # Two scans expiring 10 s apart within one minute, one the minute after.
    first = dt.datetime(2026, 11, 29, 12, 0, 5, tzinfo=dt.UTC)
    await trigger.learn([_input(first), _input(first + dt.timedelta(seconds=10))])
    await trigger.learn([_input(first + dt.timedelta(seconds=70))])
    due = trigger.due_ns()
    assert due == NOW_NS + 60 * _NS  # the end of 12:00:05's minute
    clock.now_ns = due - 1
    assert not await trigger.run_due()
    assert runs.dry_runs == []
    clock.now_ns = due
    assert await trigger.run_due()
    assert runs.dry_runs == [False]  # apply
    assert await store.lease_last_run(f"{EXPIRY_LEASE}:{due}") is not None
    assert _count(metrics, "ok") == 1
    # The run's own plan teaches what is left: 12:01:15 — the second scan of the first minute
    # does not run again (its instant is behind the run's now).
    clock.now_ns = due + 5 * _NS
    await trigger.learn([_input(first + dt.timedelta(seconds=70))])
    assert not await trigger.run_due()
    clock.now_ns = NOW_NS + 120 * _NS
    assert await trigger.run_due()
    assert runs.dry_runs == [False, False]


async def test_of_two_replicas_one_runs_each_instant(
    store_url: str, runtime: PolicyRuntime
) -> None:
    first, second = await open_job_store(store_url), await open_job_store(store_url)
    runs, clock = _Runs(pause_s=0.3), _Clock(NOW_NS)
    try:
        one = _trigger(runs, first, runtime, clock, owner="one")
        two = _trigger(runs, second, runtime, clock, owner="two")
        soon = NOW - dt.timedelta(days=7) + dt.timedelta(seconds=20)
        for trigger in (one, two):
            await trigger.learn([_input(soon)])
        assert one.due_ns() == two.due_ns() == NOW_NS + 60 * _NS
        clock.now_ns = NOW_NS + 61 * _NS
        ran = await asyncio.gather(one.run_due(), two.run_due())
        assert sorted(ran) == [False, True] and len(runs.dry_runs) == 1
        # A replica coming late to the same instant finds it done.
        late = _trigger(runs, second, runtime, clock, owner="three")
        await late.learn([_input(soon)])
        assert not await late.run_due()
        assert len(runs.dry_runs) == 1
    finally:
        await first.close()
        await second.close()


async def test_off_asks_nothing_and_runs_nothing(
    store: SqlJobStore, runtime: PolicyRuntime
) -> None:
    runs, clock = _Runs(), _Clock(NOW_NS)
    trigger = _trigger(runs, store, runtime, clock, mode="off")
    await trigger.learn([_input(NOW - dt.timedelta(days=7) + dt.timedelta(seconds=1))])
    assert trigger.next_ns is None
    clock.now_ns += 3600 * _NS
    await asyncio.wait_for(trigger.forever(), timeout=5)  # returns at once: nothing to do
    trigger.start()
    await trigger.close()
    assert runs.dry_runs == []


async def test_a_busy_reconciler_is_counted_and_the_instant_tried_again(
    store: SqlJobStore, runtime: PolicyRuntime
) -> None:
    clock, runs, metrics = _Clock(NOW_NS), _Runs(busy=1), CollectorRegistry()
    trigger = _trigger(runs, store, runtime, clock, metrics=metrics, busy_retry_s=30)
    await trigger.learn([_input(NOW - dt.timedelta(days=7) + dt.timedelta(seconds=5))])
    due = trigger.due_ns()
    assert due is not None
    clock.now_ns = due
    assert await trigger.run_due()
    assert _count(metrics, "busy") == 1
    assert await store.lease_last_run(f"{EXPIRY_LEASE}:{due}") is None  # not done
    assert not await trigger.run_due()  # not before the retry delay
    clock.now_ns = due + 30 * _NS
    assert await trigger.run_due()
    assert _count(metrics, "ok") == 1
    # The same instant's lease: one record, whoever retried it.
    assert await store.lease_last_run(f"{EXPIRY_LEASE}:{due}") is not None
    assert runs.dry_runs == [False, False]


async def test_the_loop_plans_first_and_rechecks_after_a_clock_jump(
    store: SqlJobStore, runtime: PolicyRuntime
) -> None:
    clock, metrics = _Clock(NOW_NS), CollectorRegistry()
    soon = NOW - dt.timedelta(days=7) + dt.timedelta(hours=1)
    trigger: ExpiryTrigger

    async def run(dry_run: bool) -> object:
        runs.append(dry_run)
        await trigger.learn([_input(soon)])  # what the reconciler's plan tells it
        return None

    runs: list[bool] = []
    trigger = ExpiryTrigger(
        run, store, runtime.opa, mode="plan", owner="one", lease_s=30,  # type: ignore[arg-type]
        metrics=TriggerMetrics(metrics), clock_ns=clock, recheck_s=0.05,
    )  # fmt: skip
    trigger.start()
    try:
        deadline = asyncio.get_running_loop().time() + 10
        while trigger.next_ns is None:  # the first, plan-only run taught the instant
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert runs == [True]
        await asyncio.sleep(0.2)
        assert runs == [True]  # an hour ahead: nothing yet
        clock.now_ns += 2 * 3600 * _NS  # the wall clock jumps past it
        while len(runs) < 2:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        assert runs == [True, True]  # a plan, as configured
    finally:
        await trigger.close()
    start = metrics.get_sample_value(
        "policy_sidecar_reconcile_triggered_total",
        {"trigger": "scan_expiry_start", "mode": "plan", "outcome": "ok"},
    )
    assert start == 1

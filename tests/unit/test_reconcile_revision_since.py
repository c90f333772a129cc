"""A revision activation's reconcile is told which revision was active before (``since``).

The reconciler plans only what changed since that revision (tests/e2e/
test_reconcile_revision_changes.py); here, what the trigger passes: the previous revision, and for
activations coalesced while a run was busy, the revision before the first of them.
"""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from sidecar.reconcile import RevisionTrigger, TriggerMetrics
from sidecar.store import SqlJobStore


def _trigger(
    store: SqlJobStore,
    calls: list[tuple[bool, str]],
    gate: asyncio.Event,
    started: asyncio.Event | None = None,
) -> RevisionTrigger:
    async def run(dry_run: bool, since: str) -> object:
        calls.append((dry_run, since))
        if started is not None:
            started.set()
        await gate.wait()
        return None

    return RevisionTrigger(
        run, store, mode="plan", owner="one", lease_s=30,
        metrics=TriggerMetrics(CollectorRegistry()),
    )  # fmt: skip


async def test_the_previous_revision_is_passed_and_coalesced_activations_keep_the_first(
    store: SqlJobStore,
) -> None:
    calls: list[tuple[bool, str]] = []
    gate, started = asyncio.Event(), asyncio.Event()
    trigger = _trigger(store, calls, gate, started)
    await trigger.activated("", "r0")  # the revision the sidecar starts on: no activation
    await trigger.activated("r0", "r1")
    await asyncio.wait_for(started.wait(), timeout=10)
    # r2 then r3 while r1's run is busy: r3 runs next, against r1 (what both changed since).
    await trigger.activated("r1", "r2")
    await trigger.activated("r2", "r3")
    gate.set()
    await asyncio.wait_for(trigger.idle(), timeout=10)
    assert calls == [(True, "r0"), (True, "r1")]
    assert await store.lease_last_run("reconcile-revision:r1") is not None
    assert await store.lease_last_run("reconcile-revision:r3") is not None
    assert await store.lease_last_run("reconcile-revision:r2") is None


async def test_run_for_without_since_plans_whole(store: SqlJobStore) -> None:
    calls: list[tuple[bool, str]] = []
    gate = asyncio.Event()
    gate.set()
    assert await _trigger(store, calls, gate).run_for("r9")
    assert calls == [(True, "")]

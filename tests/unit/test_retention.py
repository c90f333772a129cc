"""The periodic prune (issue 15, item 10): counts per kind, logged and exported, once at start."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from sidecar.app.retention import Pruner, retention_task
from sidecar.config import RetentionSettings


class _Store:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def prune(self, now: datetime | None = None, **days: float) -> dict[str, int]:
        self.calls.append(days)
        return {"jobs": 3, "events": 2, "dead_events": 0, "deferrals": 1}


class _Revisions:
    def __init__(self) -> None:
        self.keeps: list[int] = []

    async def prune(self, keep: int) -> int:
        self.keeps.append(keep)
        return 4


def _pruned(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("policy_sidecar_pruned_rows_total", {"kind": kind})


async def test_prune_passes_the_retention_and_counts_each_kind() -> None:
    store, revisions, registry = _Store(), _Revisions(), CollectorRegistry()
    settings = RetentionSettings(jobs_days=7, dead_events_days=60, keep_revisions=5)
    pruner = Pruner(store, revisions, settings, registry, pull_window_s=86400)
    assert _pruned(registry, "jobs") == 0
    counts = await pruner.prune()
    assert counts == {"jobs": 3, "events": 2, "dead_events": 0, "deferrals": 1, "revisions": 4}
    assert store.calls == [
        {
            "jobs_days": 7, "events_days": 30, "dead_events_days": 60, "deferrals_days": 30,
            "pull_window_s": 86400,
        }
    ]  # fmt: skip
    assert revisions.keeps == [5]
    await pruner.prune()
    assert (_pruned(registry, "jobs"), _pruned(registry, "revisions")) == (6, 8)
    assert _pruned(registry, "dead_events") == 0


async def test_the_task_prunes_once_at_start_and_survives_a_failure() -> None:
    class Failing(_Store):
        async def prune(self, now: datetime | None = None, **days: float) -> dict[str, int]:
            await super().prune(now, **days)
            raise RuntimeError("database is locked")

    store = Failing()
    settings = RetentionSettings(interval_s=1)
    async with retention_task(store, None, settings, CollectorRegistry()):
        for _ in range(100):
            if store.calls:
                break
            await asyncio.sleep(0.01)
        assert len(store.calls) == 1  # at start; the next one an interval later

"""Holding a job-store lease for as long as a block runs: renewed in the background, short-lived.

The lease is taken for ``ttl_s`` and renewed every third of it while the block runs, so a process
killed mid-run holds it at most ``ttl_s`` longer, and a run however long keeps it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger
from sidecar.typing import Leases

__all__ = ["held"]

_log = get_logger("sidecar.reconcile.lease")


@contextlib.asynccontextmanager
async def held(leases: Leases, name: str, owner: str, *, ttl_s: float) -> AsyncIterator[bool]:
    """Yield True while ``owner`` holds lease ``name`` (renewed), False when someone else does."""
    if not await leases.acquire_lease(name, owner, ttl_s=ttl_s):
        yield False
        return

    async def renew() -> None:
        while True:
            await asyncio.sleep(ttl_s / 3)
            try:
                if not await leases.acquire_lease(name, owner, ttl_s=ttl_s):
                    _log.warning("lease lost", lease=name, owner=owner)
                    return
            except Exception:
                _log.warning("lease renewal failed", lease=name, owner=owner, exc_info=True)

    task = asyncio.create_task(renew(), name=f"lease-{name}")
    try:
        yield True
    finally:
        await cancel_and_wait(task)
        await leases.release_lease(name, owner)

"""Two real registries with the destination behind a fault proxy, and the waits of a stale-copy race.

The stale-tag tests (tests/integration/test_copy_superseded*.py) hold an older image's copy on a
partitioned link while a newer one finishes first; these are their shared pieces.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sidecar.model.jobs import Job, JobState
from sidecar.oci import RegistryClients
from sidecar.replicate.copy import ImageCopier
from sidecar.replicate.retry import RetryPolicy
from sidecar.replicate.workers import WorkerPool
from sidecar.store import SqlJobStore
from tests.support.images import registry_config
from tests.support.oci_proxy import OciProxy, oci_proxy
from tests.support.registry import registry_server

__all__ = ["SlowLink", "job_until", "slow_link", "until", "uploading", "worker_pool"]


@dataclass(frozen=True)
class SlowLink:
    """Clients of ``src`` and ``dst`` straight, the same with ``dst`` behind ``link``, the URLs."""

    direct: RegistryClients
    slow: RegistryClients
    link: OciProxy
    src_url: str
    dst_url: str


@asynccontextmanager
async def slow_link(tmp_path: Path) -> AsyncIterator[SlowLink]:
    """Registries ``src`` and ``dst`` (real), and a fault proxy in front of ``dst``."""
    with registry_server(tmp_path / "src") as src, registry_server(tmp_path / "dst") as dst:
        async with oci_proxy(dst.url) as link:
            direct = RegistryClients(
                [registry_config("src", src.url), registry_config("dst", dst.url)]
            )
            slow = RegistryClients(
                [registry_config("src", src.url), registry_config("dst", link.url)]
            )
            try:
                yield SlowLink(direct, slow, link, src.url, dst.url)
            finally:
                await direct.close()
                await slow.close()


def uploading(link: OciProxy) -> bool:
    """Whether a blob upload has started through ``link``."""
    return any(r.startswith("POST ") and "/blobs/uploads/" in r for r in link.requests)


async def until(check: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Poll ``check`` until it is true (the condition is another process's: no event to await)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.02)


async def job_until(store: SqlJobStore, job: Job, states: set[JobState]) -> Job:
    """Poll the store until ``job`` is in one of ``states``; return it as it is then."""
    async with asyncio.timeout(60):
        while True:
            current = await store.get(job.job_id)
            if current.state in states:
                return current
            await asyncio.sleep(0.05)


@asynccontextmanager
async def worker_pool(
    store: SqlJobStore, clients: RegistryClients, name: str, retry: RetryPolicy
) -> AsyncIterator[None]:
    """One worker copying through ``clients`` while the block runs."""
    pool = WorkerPool(
        store, ImageCopier(clients), worker_id=name, workers=1, poll_interval_s=0.05, retry=retry
    )
    await pool.start()
    try:
        yield
    finally:
        await pool.stop()

"""Runs the built-in HTTP bundle server inside the sidecar (``policy.bundle.serve``) for a fleet."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from sidecar.bundles.server import BundleServer
from sidecar.config import BundleServeSettings

__all__ = ["hosted_bundle_server"]


@contextlib.asynccontextmanager
async def hosted_bundle_server(
    settings: BundleServeSettings, state_dir: Path
) -> AsyncIterator[BundleServer | None]:
    """Serve bundles as ``settings`` say while the block runs; yield None when not configured."""
    if not settings.enabled:
        yield None
        return
    host, _, port = settings.listen.rpartition(":")
    server = BundleServer(
        Path(settings.dir) if settings.dir else state_dir / "bundle-server",
        token=settings.token,
        read_token=settings.read_token,
        host=host,
        port=int(port),
        max_bytes=settings.max_bytes,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop()

"""A spare OPA on a candidate bundle, for the impact preview: verified like a publish, sandboxed.

The candidate is checked by the same validator as ``bundle verify`` and ``PublishBundle``
(signature required, size limits of ``policy.admin``, opa check/test, data and inventory checks),
then served by its own :class:`~sidecar.policy.ManagedOpa` on a free loopback port — with the
sandbox's capabilities check, scrubbed environment and API token — and stopped after. The
serving OPA is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sidecar.app.governance import bundle_keys
from sidecar.bundles.validate import ValidationReport, validator_for
from sidecar.config import Config
from sidecar.errors import BundleError
from sidecar.policy import ManagedOpa, OpaEngine, new_api_token
from sidecar.sensitive.runtime import SensitiveRuntime, load_sensitive_runtime
from sidecar.telemetry import get_logger
from sidecar.tools import find_tool

__all__ = ["SpareOpa", "spare_opa", "verify_candidate"]

_log = get_logger("sidecar.app.candidate")


@dataclass(frozen=True, slots=True)
class SpareOpa:
    """A candidate bundle served by a spare managed OPA (and its REST engine)."""

    managed: ManagedOpa
    engine: OpaEngine
    revision: str
    sensitive: SensitiveRuntime | None = None
    token: str = field(default="", repr=False)


def verify_candidate(config: Config, raw: bytes) -> ValidationReport:
    """Validate candidate bundle bytes like a publish (blocking); BundleRejected lists problems."""
    limits = config.policy.admin
    if len(raw) > limits.max_bundle_bytes:
        # Before anything unpacks it.
        raise BundleError(
            f"candidate bundle is {len(raw)} bytes, over policy.admin.max_bundle_bytes "
            f"({limits.max_bundle_bytes})"
        )
    _, key = bundle_keys(config)
    validator = validator_for(
        config,
        key,
        max_bytes=limits.max_bundle_bytes,
        max_unpacked_bytes=limits.max_unpacked_bytes,
        limits_from="policy.admin",
    )
    report = validator.validate(raw, require_signature=True)
    report.raise_if_invalid("candidate bundle")
    return report


@contextlib.asynccontextmanager
async def spare_opa(config: Config, raw: bytes) -> AsyncIterator[SpareOpa]:
    """Verify ``raw`` and yield it served by a spare OPA; stop that OPA and drop the file after."""
    report = await asyncio.to_thread(verify_candidate, config, raw)
    opa = config.policy.opa
    _, key = bundle_keys(config)
    token = new_api_token()
    # The serving OPA has the decrypted sensitive data: so must the candidate's, or its
    # decisions would differ for a reason the candidate does not contain.
    sensitive = await load_sensitive_runtime(config.policy.sensitive_data, opa_token=token)
    with tempfile.TemporaryDirectory(prefix="candidate-bundle-") as work:
        path = Path(work) / "candidate.tar.gz"
        path.write_bytes(raw)
        managed = ManagedOpa(
            find_tool("opa", opa.binary),
            path,
            verification_key=key,  # OPA checks the signature again as it activates it
            startup_timeout_s=opa.startup_timeout_s,
            on_launch=sensitive.loader.put if sensitive else None,
            api_token=token,
        )
        async with managed:
            engine = OpaEngine(managed.url, timeout_s=opa.timeout_ms / 1000, token=managed.token)
            _log.info("spare OPA serves the candidate", revision=report.revision, url=managed.url)
            try:
                yield SpareOpa(managed, engine, report.revision, sensitive, managed.token)
            finally:
                await engine.close()

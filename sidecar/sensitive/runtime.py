"""Wires sensitive data into a policy runtime: decrypt at startup, keep it in OPA, gate decisions."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from sidecar.config import SensitiveDataSettings
from sidecar.errors import PolicyUnavailable
from sidecar.sensitive.at_rest import EnvelopeSealer
from sidecar.sensitive.documents import SensitiveData, configured_key, load_sensitive_data
from sidecar.sensitive.opa_data import SensitiveDataLoader, SensitiveGate
from sidecar.telemetry import get_logger
from sidecar.typing import PolicyEngine

__all__ = [
    "SensitiveRuntime",
    "gated",
    "keep_in_opa",
    "load_request_sealer",
    "load_sensitive_runtime",
]

_log = get_logger("sidecar.sensitive")


@dataclass(frozen=True, slots=True)
class SensitiveRuntime:
    """The decrypted data and the loader that keeps it in OPA."""

    data: SensitiveData
    loader: SensitiveDataLoader


async def load_sensitive_runtime(
    settings: SensitiveDataSettings, *, timeout_s: float = 5.0, opa_token: str | None = None
) -> SensitiveRuntime | None:
    """Decrypt the configured documents (KMS calls run in a thread); None when none configured.

    ``opa_token`` authenticates the loader to a managed OPA's API.
    """
    data = await asyncio.to_thread(load_sensitive_data, settings)
    if data is None:
        return None
    _log.info("sensitive data decrypted", documents=list(data.names), digest=data.digest)
    loader = SensitiveDataLoader(
        data, timeout_s=timeout_s, check_interval_s=settings.check_interval_s, token=opa_token
    )
    return SensitiveRuntime(data, loader)


async def load_request_sealer(
    settings: SensitiveDataSettings, *, masked_paths: int
) -> EnvelopeSealer | None:
    """Return the sealer of stored requests under the configured key (a KMS check runs in a
    thread); None, with a warning when ``masked_paths`` says there are facts to hide, without one.
    """
    if settings.key_file is None and settings.kms_key_id is None:
        if masked_paths:
            _log.warning(
                "policy.decision_records.mask hides request facts, but policy.sensitive_data has "
                "no key: a deferred request stating them is stored in the clear; set "
                "policy.sensitive_data.key_file or kms_key_id to seal it"
            )
        return None
    return EnvelopeSealer(await asyncio.to_thread(configured_key, settings))


@contextlib.asynccontextmanager
async def keep_in_opa(
    runtime: SensitiveRuntime | None, url: Callable[[], str], *, load_now: bool
) -> AsyncIterator[None]:
    """Keep the data loaded in the OPA at ``url()`` while the block runs.

    ``load_now`` loads it first (an external OPA; a managed one loads it on every launch). An
    OPA that cannot be reached yet is retried by the watcher; one that refuses the data (a
    bundle owns the root) stops the startup with that error.
    """
    if runtime is None:
        yield
        return
    if load_now:
        if not _private_path(url()):
            _log.warning(
                "sensitive data is sent to OPA over plain HTTP on a non-loopback address; "
                "use https or an OPA on loopback",
                opa_url=url(),
            )
        try:
            await runtime.loader.put(url())
        except PolicyUnavailable as exc:
            _log.warning("sensitive data not loaded yet; retrying", error=exc.message)
    runtime.loader.start_watching(url)
    try:
        yield
    finally:
        await runtime.loader.stop()


def _private_path(url: str) -> bool:
    """Whether the plaintext PUT to ``url`` stays encrypted or on this host."""
    parts = urlsplit(url)
    if parts.scheme == "https" or parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname or "").is_loopback
    except ValueError:
        return False


def gated(
    engine: PolicyEngine, runtime: SensitiveRuntime | None, opa_ready: Callable[[], bool]
) -> PolicyEngine:
    """Return ``engine``, refusing decisions while OPA is not ready or lacks the sensitive data."""
    if runtime is None:
        return engine
    loader = runtime.loader
    return SensitiveGate(engine, lambda: opa_ready() and loader.loaded)

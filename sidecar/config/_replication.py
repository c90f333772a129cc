"""The ``policy.replication`` section: job store, worker pool, rate limits, retries and webhooks."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from sidecar.config._read import Node, optional, resolve_path

__all__ = [
    "ReplicationSettings",
    "RetrySettings",
    "WebhookSettings",
    "job_store_url",
    "parse_replication",
]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries of a failed copy: exponential backoff with full jitter, Retry-After as a floor."""

    max_attempts: int = 5
    base_s: float = 0.5
    max_s: float = 60.0


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The registry-notification endpoint; off unless ``listen`` is set (``secret`` then required)."""

    listen: str = ""
    secret: str = field(default="", repr=False)
    # Pace of retries for stored events whose processing failed (OPA down, store busy).
    retry_interval_s: float = 5.0


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    """How the sidecar copies images: where jobs live and how hard it may push each registry."""

    store: str = ""
    workers: int = 4
    per_registry_concurrency: int = 2
    registry_concurrency: Mapping[str, int] = field(default_factory=dict)
    rate_limit_rps: float | None = None
    registry_rate_limit_rps: Mapping[str, float] = field(default_factory=dict)
    blob_concurrency: int = 4
    lease_s: float = 30.0
    request_timeout_s: float = 30.0
    enrich_timeout_s: float = 2.0
    registry_enrichment: bool = True
    # How often Replicate requests the fail mode answered are decided again (OPA back or not).
    policy_retry_interval_s: float = 5.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)


def job_store_url(settings: ReplicationSettings, state_dir: str) -> str:
    """Return the job store URL: the configured one, else SQLite in the state directory."""
    return settings.store or f"sqlite:///{Path(state_dir) / 'jobs.db'}"


def _per_registry(
    node: Node, registries: Collection[str], read: Callable[[Node], _T]
) -> Mapping[str, _T]:
    out: dict[str, _T] = {}
    for name, value in node.raw_mapping().items():
        if name not in registries:
            raise value.error(f"unknown registry {name!r} (registries: {sorted(registries)})")
        out[name] = read(value)
    return MappingProxyType(out)


def _retry(node: Node) -> RetrySettings:
    f = node.fields(RetrySettings.__dataclass_fields__, strict=True)
    d = RetrySettings()
    return RetrySettings(
        max_attempts=optional(f, "max_attempts", lambda n: n.integer(minimum=1), d.max_attempts),
        base_s=optional(f, "base_s", lambda n: n.number(minimum=0.0), d.base_s),
        max_s=optional(f, "max_s", lambda n: n.number(minimum=0.0), d.max_s),
    )


def _webhook(node: Node) -> WebhookSettings:
    f = node.fields(WebhookSettings.__dataclass_fields__, strict=True)
    listen = optional(f, "listen", lambda n: n.string(), "")
    secret = optional(f, "secret", lambda n: n.string(), "")
    if listen:
        host, colon, port = listen.rpartition(":")
        if not colon or not host or not port.isdigit() or int(port) > 65535:
            raise f["listen"].error(f"expected HOST:PORT (port 0-65535), got {listen!r}")
        if not secret:
            raise node.child("secret", None).error(
                "required when webhook.listen is set: registries must authenticate their events"
            )
    retry = optional(f, "retry_interval_s", lambda n: n.seconds(minimum=0.05), 5.0)
    return WebhookSettings(listen=listen, secret=secret, retry_interval_s=retry)


def _store(node: Node, base: Path) -> str:
    text = node.string(allow_empty=False)
    if text.startswith(("postgresql://", "postgres://")):
        return text
    if text.startswith("sqlite:///"):
        return f"sqlite:///{resolve_path(text.removeprefix('sqlite:///'), base)}"
    raise node.error(f"expected sqlite:///PATH or postgresql://..., got {text!r}")


def parse_replication(node: Node, base: Path, registries: Collection[str]) -> ReplicationSettings:
    """Parse ``policy.replication``; registry names in per-registry maps must be in the inventory."""
    f = node.fields(ReplicationSettings.__dataclass_fields__, strict=True)
    d = ReplicationSettings()

    def positive_int(n: Node) -> int:
        return n.integer(minimum=1)

    def positive_number(n: Node) -> float:
        return n.number(minimum=0.001)

    return ReplicationSettings(
        store=optional(f, "store", lambda n: _store(n, base), d.store),
        workers=optional(f, "workers", positive_int, d.workers),
        per_registry_concurrency=optional(
            f, "per_registry_concurrency", positive_int, d.per_registry_concurrency
        ),
        registry_concurrency=optional(
            f,
            "registry_concurrency",
            lambda n: _per_registry(n, registries, positive_int),
            d.registry_concurrency,
        ),
        rate_limit_rps=optional(f, "rate_limit_rps", positive_number, d.rate_limit_rps),
        registry_rate_limit_rps=optional(
            f,
            "registry_rate_limit_rps",
            lambda n: _per_registry(n, registries, positive_number),
            d.registry_rate_limit_rps,
        ),
        blob_concurrency=optional(f, "blob_concurrency", positive_int, d.blob_concurrency),
        lease_s=optional(f, "lease_s", lambda n: n.number(minimum=1.0), d.lease_s),
        request_timeout_s=optional(f, "request_timeout_s", positive_number, d.request_timeout_s),
        enrich_timeout_s=optional(f, "enrich_timeout_s", positive_number, d.enrich_timeout_s),
        registry_enrichment=optional(
            f, "registry_enrichment", lambda n: n.boolean(), d.registry_enrichment
        ),
        policy_retry_interval_s=optional(
            f,
            "policy_retry_interval_s",
            lambda n: n.seconds(minimum=0.05),
            d.policy_retry_interval_s,
        ),
        retry=_retry(f.get("retry") or node.child("retry", None)),
        webhook=_webhook(f.get("webhook") or node.child("webhook", None)),
    )

"""The ``policy.replication`` section: job store, worker pool, rate limits, retries and webhooks."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationInfo

from sidecar.config._model import (
    Bool,
    Duration,
    HostPort,
    Int,
    NonEmpty,
    Number,
    Secret,
    frozen,
    read_record,
)
from sidecar.config._pubsub import PubSubSettings, parse_pubsub
from sidecar.config._read import Node, resolve_path
from sidecar.config._sqs import SqsSource, parse_sqs_sources

__all__ = [
    "ReplicationSettings",
    "RetentionSettings",
    "RetrySettings",
    "WebhookSettings",
    "job_store_url",
    "parse_replication",
]

_FORBID = ConfigDict(extra="forbid")
#: ``replication.redecide_after_s``: five minutes — a copy's decision is never older than a scan
#: gate or a quota can stand, and a burst's backlog is decided at most once more.
DEFAULT_REDECIDE_AFTER_S = 300.0


def _store(text: str, info: ValidationInfo) -> str:
    if text.startswith(("postgresql://", "postgres://")):
        return text
    if text.startswith("sqlite:///"):
        base = info.context["base"] if info.context else Path.cwd()
        return f"sqlite:///{resolve_path(text.removeprefix('sqlite:///'), base)}"
    raise ValueError(f"expected sqlite:///PATH or postgresql://..., got {text!r}")


def _registry(name: str, info: ValidationInfo) -> str:
    registries: Collection[str] = info.context["registries"] if info.context else ()
    if name not in registries:
        raise ValueError(f"unknown registry {name!r} (registries: {sorted(registries)})")
    return name


# registry name of the inventory → a setting for that registry alone
_Registry = Annotated[str, AfterValidator(_registry)]
_Positive = Annotated[Int, Field(ge=1)]
_Rate = Annotated[Number, Field(ge=0.001)]


@dataclass(frozen=True, slots=True)
class RetrySettings:
    """Retries of a failed copy: exponential backoff with full jitter, Retry-After as a floor."""

    __pydantic_config__ = _FORBID

    max_attempts: _Positive = 5
    base_s: Annotated[Number, Field(ge=0)] = 0.5
    max_s: Annotated[Number, Field(ge=0)] = 60.0


def _propagate(value: object) -> object:
    # YAML reads a bare on/off/true/false as a bool: each means the obvious mode.
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


PropagateDeletes = Annotated[
    Literal["off", "dry-run", "on"],
    BeforeValidator(_propagate, json_schema_input_type=Literal["off", "dry-run", "on"] | bool),
]


# The webhook formats a ``webhook.source_secrets`` entry may name.
_Source = Literal["distribution", "harbor", "hub", "quay", "github"]


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The registry-notification endpoint; off unless ``listen`` is set (``secret`` then required)."""

    __pydantic_config__ = _FORBID

    listen: HostPort = ""
    secret: Secret = field(default="", repr=False)
    # Pace of retries for stored events whose processing failed (OPA down, store busy): the
    # first wait, doubled per failure (at most 15 minutes).
    retry_interval_s: Annotated[Duration, Field(ge=0.05)] = 5.0
    # Failed attempts after which an event is dead-lettered (kept, never retried automatically).
    max_attempts: _Positive = 10
    # How long a replica holds the events it claimed from the inbox (several replicas on one
    # PostgreSQL: another takes an event over only after this, when its replica died).
    lease_s: Annotated[Duration, Field(ge=1.0)] = 30.0
    # Artifact Registry / GCR events through Pub/Sub (push endpoint and/or pull subscription).
    pubsub: PubSubSettings | None = None
    # A tag (or digest) deleted at a source: "on" removes the copies the sidecar itself made of
    # it (delete jobs, re-checked when they run), "dry-run" lists those delete jobs without
    # running them, "off" leaves every copy in place.
    propagate_deletes: PropagateDeletes = "off"
    # A secret for one source format alone (else ``secret``): Docker Hub and Quay carry theirs in
    # the URL, where a proxy may log it; a leaked one then opens no other endpoint.
    source_secrets: Annotated[Mapping[_Source, Secret], AfterValidator(frozen)] = field(
        default_factory=dict, repr=False
    )


_Days = Annotated[Number, Field(ge=0)]


@dataclass(frozen=True, slots=True)
class RetentionSettings:
    """How long finished state is kept before the periodic prune deletes it (0 = forever).

    Never pruned: queued, running or parked jobs, pending or retrying webhook events, unresolved
    deferrals, the active or the newest ``keep_revisions`` bundle revisions, and the audit log.
    """

    __pydantic_config__ = _FORBID

    # Succeeded, failed and skipped jobs, by last update (the newest successful copy of each
    # placement is kept: pull resolution reads it).
    jobs_days: _Days = 30.0
    # Completed webhook events (their ids deduplicate redeliveries until then).
    events_days: _Days = 30.0
    # Dead-lettered webhook events, kept longer for inspection.
    dead_events_days: _Days = 90.0
    # Resolved deferrals.
    deferrals_days: _Days = 30.0
    # Published bundle revisions kept for Rollback (the active one always); 0 = all.
    keep_revisions: Annotated[Int, Field(ge=0)] = 50
    # How often the prune runs (also once at start).
    interval_s: Annotated[Duration, Field(ge=1)] = 3600.0


@dataclass(frozen=True, slots=True)
class ReplicationSettings:
    """How the sidecar copies images: where jobs live and how hard it may push each registry."""

    __pydantic_config__ = _FORBID

    store: Annotated[NonEmpty, AfterValidator(_store)] = ""
    workers: _Positive = 4
    per_registry_concurrency: _Positive = 2
    registry_concurrency: Annotated[Mapping[_Registry, _Positive], AfterValidator(frozen)] = field(
        default_factory=dict
    )
    rate_limit_rps: _Rate | None = None
    registry_rate_limit_rps: Annotated[Mapping[_Registry, _Rate], AfterValidator(frozen)] = field(
        default_factory=dict
    )
    blob_concurrency: _Positive = 4
    lease_s: Annotated[Number, Field(ge=1)] = 30.0
    request_timeout_s: _Rate = 30.0
    enrich_timeout_s: _Rate = 2.0
    registry_enrichment: Bool = True
    # How long an image's referrers (signatures, attestations, the scan they carry) read from
    # the source registry are reused before they are read again. A referrer or scan event marks
    # the image and it is read again at once; this bounds what registries sending no such event
    # can hide. A reconcile pass reads them again for every image older than this.
    referrers_ttl_s: Annotated[Duration, Field(ge=0)] = 30.0
    # A queued or parked copy whose decision is older than this is decided again before it
    # runs, so a copy never rests on a stale decision (a scan that expired while it waited, a
    # registry parked for a day). 0: only a bundle revision change decides it again.
    redecide_after_s: Annotated[Duration, Field(ge=0)] = DEFAULT_REDECIDE_AFTER_S
    # How often Replicate requests the fail mode answered are decided again (OPA back or not).
    policy_retry_interval_s: Annotated[Duration, Field(ge=0.05)] = 5.0
    # The sliding window of pull counts fed to input.access ("7d"): pulls older than this no
    # longer count (and the retention prune deletes them), so rebalancing follows current demand.
    pull_window: Annotated[Duration, Field(ge=3600)] = 7 * 86400.0
    # How often the queue gauges (depth, oldest wait per destination) are read from the store:
    # one grouped query, never at scrape time, so a slow database cannot stall /metrics.
    queue_metrics_interval_s: Annotated[Duration, Field(ge=1)] = 15.0
    retry: RetrySettings = field(default_factory=RetrySettings)
    webhook: WebhookSettings = field(default_factory=WebhookSettings)
    retention: RetentionSettings = field(default_factory=RetentionSettings)
    # SQS queues of ECR events (EventBridge rule → queue), recorded in the webhook inbox.
    sqs: tuple[SqsSource, ...] = ()


def job_store_url(settings: ReplicationSettings, state_dir: str) -> str:
    """Return the job store URL: the configured one, else SQLite in the state directory."""
    return settings.store or f"sqlite:///{Path(state_dir) / 'jobs.db'}"


def _webhook(node: Node) -> WebhookSettings:
    pubsub_node = node.fields().get("pubsub") or node.child("pubsub", None)
    pubsub = parse_pubsub(pubsub_node)
    webhook = read_record(WebhookSettings, node, given={"pubsub": pubsub} if pubsub else None)
    if pubsub is not None and not webhook.listen:
        raise pubsub_node.error(
            "needs webhook.listen: Pub/Sub events go through the webhook inbox and its processor"
        )
    if webhook.listen and not webhook.secret:
        raise node.child("secret", None).error(
            "required when webhook.listen is set: registries must authenticate their events"
        )
    return webhook


def parse_replication(node: Node, base: Path, registries: Collection[str]) -> ReplicationSettings:
    """Parse ``policy.replication``; registry names in per-registry maps must be in the inventory."""
    section = node.fields()
    retry = section.get("retry") or node.child("retry", None)
    webhook = section.get("webhook") or node.child("webhook", None)
    retention = section.get("retention") or node.child("retention", None)
    sqs = section.get("sqs") or node.child("sqs", None)
    return read_record(
        ReplicationSettings,
        node,
        base=base,
        context={"registries": registries},
        given={
            "retry": read_record(RetrySettings, retry),
            "webhook": _webhook(webhook),
            "retention": read_record(RetentionSettings, retention),
            "sqs": parse_sqs_sources(sqs, base, registries),
        },
    )

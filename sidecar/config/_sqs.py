"""The ``policy.replication.sqs`` list: SQS queues an EventBridge rule fills with ECR events.

Each source names the inventory registry whose ECR events arrive on the queue; the poller
(sidecar/webhooks/sqs.py) records them in the webhook inbox. Every setting has a named default
here, and the bounds are SQS's own (long polling waits at most 20 s, a receive returns at most 10
messages, a visibility timeout lasts at most 12 hours).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationInfo

from sidecar.config._model import URL, Duration, Expanded, Int, NonEmpty, Str, read_record
from sidecar.config._read import Node, resolve_path
from sidecar.config._scalars import choice

__all__ = [
    "DEFAULT_SQS_MAX_MESSAGE_BYTES",
    "DEFAULT_SQS_VISIBILITY_TIMEOUT_S",
    "DEFAULT_SQS_WAIT_TIME_S",
    "INVALID_MESSAGE_RULES",
    "SqsAuth",
    "SqsSource",
    "parse_sqs_sources",
]

DEFAULT_SQS_WAIT_TIME_S = 20  # long polling: SQS's maximum, the fewest empty receives
DEFAULT_SQS_VISIBILITY_TIMEOUT_S = 60  # hidden from other receivers while it is recorded
DEFAULT_SQS_MAX_MESSAGE_BYTES = 64 * 1024  # an ECR event is under 2 KiB
INVALID_MESSAGE_RULES = ("delete", "keep")

_FORBID = ConfigDict(extra="forbid")


def _registry(name: str, info: ValidationInfo) -> str:
    registries: Collection[str] = info.context["registries"] if info.context else ()
    if name not in registries:
        raise ValueError(f"unknown registry {name!r} (registries: {sorted(registries)})")
    return name


@dataclass(frozen=True, slots=True)
class SqsAuth:
    """AWS credentials of a queue's client, when they differ from its registry's ``auth``."""

    __pydantic_config__ = _FORBID

    profile: Expanded = ""
    credentials_file: Expanded = ""
    role_arn: Expanded = ""


@dataclass(frozen=True, slots=True)
class SqsSource:
    """One SQS queue of ECR events (EventBridge rule → queue) and how it is polled."""

    __pydantic_config__ = _FORBID

    queue_url: URL
    # The inventory registry (the ECR registry) whose events the queue carries.
    registry: Annotated[NonEmpty, AfterValidator(_registry)]
    # How metrics and logs name the source (default: the registry's name).
    name: Str = ""
    # The queue's region (default: the registry's region, else the SDK's default chain).
    region: Str = ""
    # Another SQS endpoint (a VPC endpoint, or an emulator in tests).
    endpoint_url: URL | None = None
    wait_time_s: Annotated[Int, Field(ge=0, le=20)] = DEFAULT_SQS_WAIT_TIME_S
    visibility_timeout_s: Annotated[Int, Field(ge=1, le=43200)] = DEFAULT_SQS_VISIBILITY_TIMEOUT_S
    max_messages: Annotated[Int, Field(ge=1, le=10)] = 10
    max_message_bytes: Annotated[Int, Field(ge=1024, le=1024 * 1024)] = (
        DEFAULT_SQS_MAX_MESSAGE_BYTES
    )
    # After a failed receive or delete (SQS unreachable, credentials refused): the first wait,
    # doubled per consecutive failure up to retry_max_s, with jitter.
    retry_base_s: Annotated[Duration, Field(ge=0.05)] = 1.0
    retry_max_s: Annotated[Duration, Field(ge=0.05)] = 60.0
    # A message that can never become an event (not JSON, too big, not an ECR event, fields
    # missing): deleted (default), or kept for the queue's redrive policy to dead-letter.
    invalid_messages: Annotated[
        str,
        BeforeValidator(
            choice(INVALID_MESSAGE_RULES), json_schema_input_type=Literal["delete", "keep"]
        ),
    ] = "delete"
    # None: the registry's own auth (profile, credentials_file, role_arn), as ECR tokens use.
    auth: SqsAuth | None = field(default=None)


def _source(node: Node, base: Path, registries: Collection[str]) -> SqsSource:
    fields = node.fields()
    given: dict[str, object] = {}
    auth = fields.get("auth")
    if auth is not None and not auth.is_null:
        parsed = read_record(SqsAuth, auth)
        if parsed.credentials_file:
            parsed = replace(parsed, credentials_file=resolve_path(parsed.credentials_file, base))
        given["auth"] = parsed
    source = read_record(SqsSource, node, context={"registries": registries}, given=given)
    if source.retry_max_s < source.retry_base_s:
        raise node.child("retry_max_s", source.retry_max_s).error(
            f"must be at least retry_base_s ({source.retry_base_s:g})"
        )
    return source if source.name else replace(source, name=source.registry)


def parse_sqs_sources(node: Node, base: Path, registries: Collection[str]) -> tuple[SqsSource, ...]:
    """Parse ``policy.replication.sqs`` (a list); names must be unique, registries known."""
    if node.is_null:
        return ()
    sources: list[SqsSource] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(node.items()):
        source = _source(item, base, registries)
        if source.name in seen:
            where = item.fields().get("name") or item.fields().get("registry") or item
            raise where.error(
                f"duplicate SQS source name {source.name!r} (first at index {seen[source.name]}); "
                "set a distinct name"
            )
        seen[source.name] = index
        sources.append(source)
    return tuple(sources)

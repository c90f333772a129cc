"""Amazon ECR events as EventBridge delivers them to SQS: parsed into inbox events.

An EventBridge rule (source ``aws.ecr``) with an SQS target puts each event's JSON, unchanged, in
a message body. Two detail types are acted on:

* ``ECR Image Action`` — ``detail.action-type`` ``PUSH`` or ``DELETE`` with ``result``
  ``SUCCESS`` (a failed push changed nothing), ``repository-name``, ``image-digest`` and, for a
  tagged image, ``image-tag``;
* ``ECR Image Scan`` — ``scan-status`` ``COMPLETE``, ``repository-name``, ``image-digest``,
  ``image-tags`` and ``finding-severity-counts`` (only the severities found).

:func:`parse_ecr_message` returns the :class:`RegistryEvent` (action ``push``, ``delete`` or
``scan``) to record, :class:`EcrIgnored` for a well-formed ECR event the sidecar does not act
on (another detail type, a failed push), and raises :class:`~sidecar.errors.WebhookRejected` for a message that
is not a usable ECR event at all. The recorded form is a Distribution-shaped event (``id``,
``action``, ``timestamp``, ``target``) plus the original under ``ecr``, so the inbox, its
processor and ``jobs --events`` read it like any notification; the inbox key is
``aws.ecr:<EventBridge id>``, so a redelivered message is a duplicate however it arrives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from sidecar.config import RegistryConfig
from sidecar.enrich import parse_rfc3339
from sidecar.errors import WebhookRejected
from sidecar.webhooks.envelope import RegistryEvent

__all__ = [
    "ECR_IMAGE_ACTION",
    "ECR_IMAGE_SCAN",
    "ECR_SOURCE",
    "EVENT_ID_PREFIX",
    "EcrIgnored",
    "parse_ecr_message",
]

ECR_SOURCE = "aws.ecr"
ECR_IMAGE_ACTION = "ECR Image Action"
ECR_IMAGE_SCAN = "ECR Image Scan"
EVENT_ID_PREFIX = f"{ECR_SOURCE}:"

_ACTIONS = {"PUSH": "push", "DELETE": "delete"}
# ECR stores image manifests only; an event without its media type names an image manifest.
_DEFAULT_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
_EVENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ACCOUNT = re.compile(r"^[0-9]{12}$")
# ECR's repository grammar (lower case, / separated) and OCI's tag and digest grammars.
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
_MEDIA_TYPE = re.compile(
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$"
)
_MAX_REPOSITORY = 256
_MAX_TAGS = 1000  # ECR's own limit of tags per image
_SEVERITIES = frozenset({"CRITICAL", "HIGH", "MEDIUM", "LOW", "INFORMATIONAL", "UNDEFINED"})


@dataclass(frozen=True, slots=True)
class EcrIgnored:
    """A well-formed ECR event the sidecar does not act on, and why (for the log line)."""

    event_id: str
    reason: str


def _bad(problem: str) -> WebhookRejected:
    return WebhookRejected(problem, status=400)


def _text(obj: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise _bad(f"{where}{key} is missing")
        return ""
    if not isinstance(value, str):
        raise _bad(f"{where}{key} must be a string")
    return value


def _matching(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise _bad(f"{what} {value[:80]!r} is malformed")
    return value


def _envelope(body: bytes, max_bytes: int) -> dict[str, Any]:
    if len(body) > max_bytes:
        raise WebhookRejected(
            f"message is {len(body)} bytes, at most {max_bytes} allowed", status=413
        )
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _bad(f"message body is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise _bad("message body is not an EventBridge event (a JSON object)")
    source = _text(doc, "source", "")
    if source != ECR_SOURCE:
        raise _bad(f"source is {source[:80]!r}, not {ECR_SOURCE!r}")
    return doc


def _check_origin(doc: Mapping[str, Any], registry: RegistryConfig) -> None:
    """An event from another account or region than the queue's registry names another image."""
    account = _text(doc, "account", "", required=False)
    if account and not _ACCOUNT.match(account):
        raise _bad(f"account {account[:40]!r} is not a 12-digit AWS account id")
    if registry.account_id and account != registry.account_id:
        raise WebhookRejected(
            f"event of account {account or '(none)'!r}, but registry {registry.name} is account "
            f"{registry.account_id}",
            status=403,
        )
    region = _text(doc, "region", "", required=False)
    if registry.region and region != registry.region:
        raise WebhookRejected(
            f"event of region {region[:40] or '(none)'!r}, but registry {registry.name} is in "
            f"{registry.region}",
            status=403,
        )


def _image(detail: Mapping[str, Any]) -> tuple[str, str]:
    repository = _text(detail, "repository-name", "detail.")
    if len(repository) > _MAX_REPOSITORY:
        raise _bad(f"detail.repository-name is longer than {_MAX_REPOSITORY} characters")
    _matching(repository, _REPOSITORY, "detail.repository-name")
    digest = _matching(_text(detail, "image-digest", "detail."), _DIGEST, "detail.image-digest")
    return repository, digest


def _action(detail: Mapping[str, Any]) -> dict[str, Any] | str:
    kind = _text(detail, "action-type", "detail.")
    result = _text(detail, "result", "detail.")
    if kind not in _ACTIONS:
        return f"action-type {kind[:40]!r} is not followed (PUSH, DELETE)"
    if result != "SUCCESS":
        return f"result {result[:40]!r}: the {kind} changed nothing"
    repository, digest = _image(detail)
    tag = _text(detail, "image-tag", "detail.", required=False)
    if tag:
        _matching(tag, _TAG, "detail.image-tag")
    media = _text(detail, "manifest-media-type", "detail.", required=False)
    if media:
        _matching(media, _MEDIA_TYPE, "detail.manifest-media-type")
    return {
        "action": _ACTIONS[kind],
        "target": {
            "repository": repository,
            "digest": digest,
            "tag": tag,
            "mediaType": media or _DEFAULT_MEDIA_TYPE,
        },
    }


def _tags(detail: Mapping[str, Any]) -> list[str]:
    tags = detail.get("image-tags", [])
    if tags is None:
        return []
    if not isinstance(tags, list) or len(tags) > _MAX_TAGS:
        raise _bad(f"detail.image-tags must be a list of at most {_MAX_TAGS} tags")
    for tag in tags:
        if not isinstance(tag, str):
            raise _bad("detail.image-tags must hold strings")
        _matching(tag, _TAG, "detail.image-tags[]")
    return tags


def _severities(detail: Mapping[str, Any]) -> dict[str, int]:
    counts = detail.get("finding-severity-counts", {})
    if counts is None:
        return {}
    if not isinstance(counts, dict):
        raise _bad("detail.finding-severity-counts must be an object")
    for severity, count in counts.items():
        if severity not in _SEVERITIES:
            raise _bad(f"detail.finding-severity-counts has unknown severity {severity[:40]!r}")
        if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count < 2**31:
            raise _bad(f"detail.finding-severity-counts.{severity} must be a count")
    return dict(counts)


def _scan(detail: Mapping[str, Any]) -> dict[str, Any] | str:
    status = _text(detail, "scan-status", "detail.")
    if status != "COMPLETE":
        return f"scan-status {status[:40]!r}: no findings a gate could use"
    repository, digest = _image(detail)
    tags = _tags(detail)
    return {
        "action": "scan",
        "target": {
            "repository": repository,
            "digest": digest,
            # The processor names an image by one tag; the full list stays in target.tags.
            "tag": tags[0] if tags else "",
            "tags": tags,
            "mediaType": _DEFAULT_MEDIA_TYPE,
        },
        "scan": {"status": status, "finding_severity_counts": _severities(detail)},
    }


def parse_ecr_message(
    body: bytes, registry: RegistryConfig, *, origin: str, max_bytes: int
) -> RegistryEvent | EcrIgnored:
    """Parse one SQS message body holding an ECR EventBridge event, from ``registry``'s queue.

    Returns the event to record (its ``raw`` is the stored form, ``origin`` naming the source), or
    EcrIgnored for an ECR event the sidecar does not act on. Raises WebhookRejected (400:
    malformed, 403: another account or region than ``registry``, 413: over ``max_bytes``).
    """
    doc = _envelope(body, max_bytes)
    event_id = EVENT_ID_PREFIX + _matching(_text(doc, "id", ""), _EVENT_ID, "id")
    detail_type = _text(doc, "detail-type", "")
    if detail_type not in (ECR_IMAGE_ACTION, ECR_IMAGE_SCAN):
        # Another ECR event (pull through cache, replication…) that a broad rule let in.
        return EcrIgnored(event_id, f"detail-type {detail_type[:60]!r} is not followed")
    _check_origin(doc, registry)
    occurred = _text(doc, "time", "")
    if parse_rfc3339(occurred) is None:
        raise _bad(f"time {occurred[:40]!r} is not an RFC 3339 time")
    detail = doc.get("detail")
    if not isinstance(detail, dict):
        raise _bad("detail is missing or not an object")
    stored = _action(detail) if detail_type == ECR_IMAGE_ACTION else _scan(detail)
    if isinstance(stored, str):
        return EcrIgnored(event_id, stored)
    target = stored["target"]
    raw = {
        "id": event_id,
        "timestamp": occurred,
        "origin": origin,
        **stored,
        "ecr": doc,
    }
    return RegistryEvent(
        id=raw["id"],
        action=stored["action"],
        repository=target["repository"],
        media_type=target["mediaType"],
        digest=target["digest"],
        tag=target["tag"],
        raw=raw,
    )

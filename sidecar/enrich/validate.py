"""Request validation: each malformed field becomes InvalidArgument naming it, before any work.

The gRPC layer and the CLI both call :func:`validate_request`, so a bad request gets the same
``INVALID_ARGUMENT`` with the same field name whichever way it came in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from sidecar.config import Limits
from sidecar.enrich.rfc3339 import parse_rfc3339
from sidecar.errors import InvalidArgument
from sidecar.model.decision import EVENTS, DecideRequest, RegistryFacts

__all__ = ["MAX_REPOSITORY_LENGTH", "validate_request"]

# OCI distribution spec: repository name grammar and tag grammar.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")
_DIGEST = re.compile(r"^(?:sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")
# The distribution reference library caps a full name at 255 characters; registries agree.
MAX_REPOSITORY_LENGTH = 255


def _check_strings(field: str, values: Mapping[str, str], limits: Limits) -> None:
    if len(values) > limits.max_labels:
        raise InvalidArgument(field, f"{len(values)} entries, at most {limits.max_labels} allowed")
    for key, value in values.items():
        if not key:
            raise InvalidArgument(field, "a key must not be empty")
        key_bytes = len(key.encode("utf-8"))
        if key_bytes > limits.max_label_key_bytes:
            raise InvalidArgument(
                field,
                f"key {key[:40]!r}… is {key_bytes} bytes, at most "
                f"{limits.max_label_key_bytes} allowed",
            )
        value_bytes = len(value.encode("utf-8"))
        if value_bytes > limits.max_label_value_bytes:
            raise InvalidArgument(
                field,
                f"value of {key[:40]!r} is {value_bytes} bytes, at most "
                f"{limits.max_label_value_bytes} allowed",
            )


def _too_long(field: str, text: str, limits: Limits) -> None:
    size = len(text.encode("utf-8"))
    if size > limits.max_string_bytes:
        raise InvalidArgument(
            field,
            f"{text[:40]!r}… is {size} bytes, at most {limits.max_string_bytes} allowed",
        )


def _check_list(field: str, values: Sequence[str], limit: int, limits: Limits) -> None:
    if len(values) > limit:
        raise InvalidArgument(field, f"{len(values)} entries, at most {limit} allowed")
    for value in values:
        _too_long(field, value, limits)


def _check_image(request: DecideRequest, names: set[str]) -> None:
    image = request.image
    if not image.registry:
        raise InvalidArgument("image.registry", "required")
    if names and image.registry not in names:
        raise InvalidArgument(
            "image.registry",
            f"unknown registry {image.registry!r} (inventory: {', '.join(sorted(names))})",
        )
    if not image.repository:
        raise InvalidArgument("image.repository", "required")
    if len(image.repository) > MAX_REPOSITORY_LENGTH or not _REPOSITORY.match(image.repository):
        raise InvalidArgument(
            "image.repository",
            f"{image.repository[:80]!r} is not an OCI repository name (lower-case path "
            f"components of [a-z0-9] joined by . _ __ or -, separated by /; at most "
            f"{MAX_REPOSITORY_LENGTH} characters)",
        )
    if not image.tag and not image.digest:
        raise InvalidArgument("image.tag", "a tag or a digest is required")
    if image.tag and not _TAG.match(image.tag):
        raise InvalidArgument(
            "image.tag",
            f"{image.tag[:140]!r} is not an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})",
        )
    if image.digest and not _DIGEST.match(image.digest):
        raise InvalidArgument(
            "image.digest",
            f"{image.digest[:140]!r} is not sha256:<64 lower-case hex> or "
            "sha512:<128 lower-case hex>",
        )


def _check_present_at(present_at: Sequence[str], names: set[str], limits: Limits) -> None:
    # Inventory names only, each once: the policy may turn any of them into a removal.
    _check_list("image.present_at", present_at, limits.max_access_regions, limits)
    unknown = sorted(set(present_at) - names) if names else []
    if unknown:
        raise InvalidArgument("image.present_at", f"unknown registries {unknown[:10]}")
    if len(set(present_at)) != len(present_at):
        raise InvalidArgument("image.present_at", "a registry is named more than once")


def validate_request(
    request: DecideRequest, limits: Limits, inventory: Sequence[RegistryFacts] = ()
) -> None:
    """Raise InvalidArgument naming the first malformed field of ``request``.

    ``inventory``, when non-empty, is what ``image.registry`` and ``registry_health`` may name.
    """
    names = {r.name for r in inventory}
    _check_image(request, names)
    _check_strings("image.labels", request.labels, limits)
    _check_strings("image.annotations", request.annotations, limits)
    _check_list("image.platforms", request.platforms, limits.max_platforms, limits)
    _check_list("caller.roles", request.caller.roles, limits.max_roles, limits)
    _check_list("access", tuple(request.access), limits.max_access_regions, limits)
    if request.created_at is not None and parse_rfc3339(request.created_at) is None:
        raise InvalidArgument("image.created_at", f"{request.created_at!r} is not an RFC 3339 time")
    if request.size_bytes < 0:
        raise InvalidArgument("image.size_bytes", f"must not be negative, got {request.size_bytes}")
    if request.event not in EVENTS:
        raise InvalidArgument("event", f"{request.event!r} is not one of {', '.join(EVENTS)}")
    if request.now is not None and parse_rfc3339(request.now) is None:
        raise InvalidArgument("now", f"{request.now!r} is not an RFC 3339 time")
    unknown = sorted(set(request.registry_health) - names) if names else []
    if unknown:
        raise InvalidArgument("registry_health", f"unknown registries {unknown}")
    _check_present_at(request.present_at, names, limits)
    for region, pulls in request.access.items():
        if pulls < 0:
            raise InvalidArgument("access", f"pulls for {region!r} must not be negative")
    usage = request.tenant_usage
    if usage is not None:
        if usage.storage_used_bytes < 0:
            raise InvalidArgument("tenant_usage.storage_used_bytes", "must not be negative")
        if usage.storage_limit_bytes < 0:
            raise InvalidArgument("tenant_usage.storage_limit_bytes", "must not be negative")

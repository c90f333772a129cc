"""What the non-Distribution webhook formats share: authentication, ids, typed field reading.

Every reader raises :class:`~sidecar.errors.WebhookRejected` with the status the endpoint
answers (401 unauthenticated, 400 malformed), naming the field at fault, never echoing a secret.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

from sidecar.errors import WebhookRejected

__all__ = [
    "MAX_RESOURCES",
    "check_header_secret",
    "check_hmac_sha256",
    "check_query_token",
    "derived_id",
    "digest_of",
    "epoch_rfc3339",
    "items",
    "load_object",
    "section",
    "split_reference",
    "text",
]

#: The most images one webhook request may name (Harbor resources, Quay updated_tags): a bound
#: on what one request can queue; a real registry sends one to a few.
MAX_RESOURCES = 100


def _same(given: str, secret: str) -> bool:
    # Constant time: the secret must not leak through response timing.
    return hmac.compare_digest(given.encode(), secret.encode())


def check_header_secret(value: str | None, secret: str, header: str) -> None:
    """Raise WebhookRejected(401) unless header ``value`` is ``secret`` or ``Bearer <secret>``.

    Harbor sends its policy's "Auth Header" verbatim as ``Authorization``, so either spelling is
    what an operator may have typed there.
    """
    if not value or not value.strip():
        raise WebhookRejected(f"missing {header} header (want the shared secret)", status=401)
    given = value.strip()
    scheme, _, token = given.partition(" ")
    if scheme.lower() == "bearer":
        given = token.strip()
    if not _same(given, secret):
        raise WebhookRejected(f"wrong shared secret in {header} header", status=401)


def check_query_token(token: str | None, secret: str) -> None:
    """Raise WebhookRejected(401) unless the ``token`` query parameter is ``secret``.

    For senders that cannot set a header (Docker Hub, Quay): the secret travels in the URL.
    """
    if not token:
        raise WebhookRejected("missing token query parameter (want the shared secret)", status=401)
    if not _same(token, secret):
        raise WebhookRejected("wrong shared secret in the token query parameter", status=401)


def check_hmac_sha256(signature: str | None, body: bytes, secret: str, header: str) -> None:
    """Raise WebhookRejected(401) unless ``signature`` is ``sha256=<hex HMAC of body>`` (GitHub)."""
    if not signature:
        raise WebhookRejected(f"missing {header} header (want sha256=<HMAC>)", status=401)
    want = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not _same(signature.strip(), want):
        raise WebhookRejected(f"{header} does not match the body and shared secret", status=401)


def load_object(body: bytes, what: str) -> Mapping[str, Any]:
    """Parse ``body`` as a JSON object; WebhookRejected(400) otherwise."""
    if not body.strip():
        raise WebhookRejected(f"empty body (want a {what} JSON object)", status=400)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WebhookRejected(f"body is not JSON: {exc}", status=400) from None
    if not isinstance(doc, dict):
        raise WebhookRejected(f"body is not a {what} JSON object", status=400)
    return doc


def text(obj: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str:
    """``obj[key]`` as a string ("" when absent); WebhookRejected(400) when not a string."""
    value = obj.get(key)
    if value is None or value == "":
        if required:
            raise WebhookRejected(f"{where}.{key} is missing", status=400)
        return ""
    if not isinstance(value, str):
        raise WebhookRejected(f"{where}.{key} must be a string", status=400)
    return value


def section(
    obj: Mapping[str, Any], key: str, where: str, *, required: bool = False
) -> Mapping[str, Any]:
    """``obj[key]`` as an object ({} when absent); WebhookRejected(400) when not an object."""
    value = obj.get(key)
    if value is None:
        if required:
            raise WebhookRejected(f"{where}.{key} is missing", status=400)
        return {}
    if not isinstance(value, dict):
        raise WebhookRejected(f"{where}.{key} must be an object", status=400)
    return value


def items(obj: Mapping[str, Any], key: str, where: str) -> Sequence[Any]:
    """``obj[key]`` as a list of at most :data:`MAX_RESOURCES`; WebhookRejected(400) otherwise."""
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list):
        raise WebhookRejected(f"{where}.{key} must be a list", status=400)
    if len(value) > MAX_RESOURCES:
        raise WebhookRejected(
            f"{where}.{key} names {len(value)} items; at most {MAX_RESOURCES} per request",
            status=400,
        )
    return value


def epoch_rfc3339(value: object, where: str) -> str:
    """A Unix time (seconds) as RFC3339 UTC ("" when absent); WebhookRejected(400) when not one."""
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WebhookRejected(f"{where} must be a Unix time in seconds", status=400)
    try:
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        raise WebhookRejected(f"{where} is not a plausible Unix time", status=400) from None


def derived_id(source: str, *parts: object) -> str:
    """An event id for formats that carry none: a hash of what identifies the event.

    The same delivery (a retry, a replay) gets the same id and is recorded once.
    """
    digest = hashlib.sha256(orjson.dumps([source, *parts], option=orjson.OPT_SORT_KEYS))
    return f"{source}:{digest.hexdigest()[:40]}"


def split_reference(reference: str) -> tuple[str, str, str, str]:
    """Split ``[scheme://]HOST/REPOSITORY[:TAG][@DIGEST]`` into (host, repository, tag, digest).

    Any part that is missing is "" (a reference without a ``/`` has no host).
    """
    rest = reference.strip().partition("://")[2] or reference.strip()
    rest, _, digest = rest.partition("@")
    host, slash, path = rest.partition("/")
    if not slash:
        return "", "", "", digest
    repository, colon, tag = path.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = path, ""
    return host, repository.strip("/"), tag, digest


_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,256}")


def digest_of(value: str, where: str) -> str:
    """``value`` when it is an OCI digest ("" stays ""); WebhookRejected(400) otherwise."""
    if value and not _DIGEST.fullmatch(value):
        raise WebhookRejected(f"{where} is not a digest (algorithm:hex)", status=400)
    return value

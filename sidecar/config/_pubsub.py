"""``policy.replication.webhook.pubsub``: Artifact Registry / GCR notifications through Pub/Sub.

Two ways in, either or both: a *push* subscription POSTs to the sidecar's webhook server
(``/v1/registry/events/pubsub``), authenticated by the subscription's OIDC token (``oidc``) or,
without it, by a shared ``token`` in the endpoint URL; a *pull* subscription (``subscription``) is
read by the sidecar itself with google-cloud-pubsub.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator, ConfigDict, Field

from sidecar.config._model import (
    URL,
    Bool,
    Duration,
    Expanded,
    HostPort,
    Int,
    Secret,
    Str,
    read_record,
)
from sidecar.config._read import Node

__all__ = [
    "GOOGLE_ISSUER",
    "GOOGLE_JWKS_URL",
    "OidcSettings",
    "PubSubSettings",
    "parse_pubsub",
]

_FORBID = ConfigDict(extra="forbid")

# Google signs push-subscription OIDC tokens with these keys and names itself issuer so.
GOOGLE_ISSUER = "https://accounts.google.com"
GOOGLE_JWKS_URL = "https://www.googleapis.com/oauth2/v3/certs"

# Project ids (6-30) and subscription names (3-255) as Pub/Sub defines them.
_SUBSCRIPTION = re.compile(
    r"^projects/[a-z][a-z0-9-]{4,28}[a-z0-9]/subscriptions/[A-Za-z][\w.~+%-]{2,254}$"
)


def _subscription(text: str) -> str:
    if text and not _SUBSCRIPTION.match(text):
        raise ValueError(f"expected projects/PROJECT/subscriptions/NAME, got {text!r}")
    return text


@dataclass(frozen=True, slots=True)
class OidcSettings:
    """Verification of the push subscription's OIDC token (``Authorization: Bearer <JWT>``)."""

    __pydantic_config__ = _FORBID

    # The audience the push subscription puts in its tokens (by default the push endpoint URL).
    audience: Str = ""
    issuer: Str = GOOGLE_ISSUER
    # Where the token's signing keys (a JWKS) are fetched from; kept for jwks_refresh_s.
    jwks_url: URL = GOOGLE_JWKS_URL
    jwks_refresh_s: Annotated[Duration, Field(ge=1)] = 3600.0
    # The service account the subscription pushes as (the token's verified ``email``); "" = any.
    service_account: Expanded = ""
    # Tolerated clock difference for ``iat``/``exp``.
    clock_skew_s: Annotated[Duration, Field(ge=0, le=300)] = 30.0


@dataclass(frozen=True, slots=True)
class PubSubSettings:
    """Artifact Registry / GCR events through Pub/Sub: a push endpoint and/or a pull subscription."""

    __pydantic_config__ = _FORBID

    # Serve POST /v1/registry/events/pubsub on the webhook listener.
    push: Bool = False
    # Shared secret the push endpoint URL carries as ``?token=`` (required for push without oidc).
    token: Secret = field(default="", repr=False)
    oidc: OidcSettings | None = None
    # Pull mode: projects/PROJECT/subscriptions/NAME, read with google-cloud-pubsub.
    subscription: Annotated[Str, AfterValidator(_subscription)] = ""
    # Another Pub/Sub endpoint, HOST:PORT (a private endpoint, or an emulator in tests).
    endpoint: HostPort = ""
    # Plaintext gRPC with no credentials to ``endpoint``: for a local emulator only.
    insecure: Bool = False
    # A service-account key file (else application default credentials).
    credentials_file: Expanded = ""
    # Messages asked for per pull.
    max_messages: Annotated[Int, Field(ge=1, le=1000)] = 100
    # Pause after a failed pull (Pub/Sub unreachable, store error) before the next one.
    pull_retry_s: Annotated[Duration, Field(ge=0.05)] = 5.0


def parse_pubsub(node: Node) -> PubSubSettings | None:
    """Parse ``webhook.pubsub`` (None when absent); push needs ``oidc.audience`` or ``token``."""
    if node.is_null:
        return None
    oidc_node = node.fields().get("oidc") or node.child("oidc", None)
    oidc = None if oidc_node.is_null else read_record(OidcSettings, oidc_node)
    settings = read_record(PubSubSettings, node, given={"oidc": oidc} if oidc else None)
    if oidc is not None and not oidc.audience:
        raise oidc_node.child("audience", None).error(
            "required: the audience the push subscription's tokens carry (usually the endpoint URL)"
        )
    if settings.push and oidc is None and not settings.token:
        raise node.child("token", None).error(
            "required when push is true and no oidc is configured: the push endpoint must "
            "authenticate its sender (set oidc, or a token the subscription's URL carries)"
        )
    if settings.insecure and not settings.endpoint:
        raise node.child("endpoint", None).error("required when insecure is true (an emulator)")
    if not settings.push and not settings.subscription:
        raise node.child("push", None).error(
            "pubsub is configured but neither push is true nor a subscription is set"
        )
    return settings

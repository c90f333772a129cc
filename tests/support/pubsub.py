"""Pub/Sub test support: gcr messages, push envelopes, an OIDC issuer, and the pstest Pub/Sub fake.

* :func:`gcr_data` / :func:`push_envelope` build what Artifact Registry publishes to its ``gcr``
  topic and what a push subscription POSTs (the documented shapes).
* :class:`OidcIssuer` stands in for Google's token service: an RSA key whose JWKS it serves on a
  loopback port, and :meth:`OidcIssuer.token` signs push-subscription tokens with google-auth.
* :func:`pstest_server` runs the pinned ``pstest-server`` (Go's ``cloud.google.com/go/pubsub/v2/
  pstest``, built by scripts/install-tools.sh from tools/pstest-server) on a loopback port.
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt

from sidecar.tools import find_tool
from tests.support.fake_registry import fake_server

__all__ = [
    "OidcIssuer",
    "PstestServer",
    "PubSubAdmin",
    "gcr_data",
    "oidc_issuer",
    "pstest_server",
    "push_envelope",
]

GOOGLE_ISSUER = "https://accounts.google.com"


def gcr_data(action: str, image: str, *, digest: str = "", tag: str = "") -> dict[str, str]:
    """The data of a ``gcr`` topic message for ``image`` (``HOST/PATH``), digest and/or tag."""
    data = {"action": action}
    if digest:
        data["digest"] = f"{image}@{digest}"
    if tag:
        data["tag"] = f"{image}:{tag}"
    return data


def push_envelope(
    data: Mapping[str, Any] | bytes,
    *,
    message_id: str | None = None,
    subscription: str = "projects/test-project/subscriptions/gcr-push",
) -> bytes:
    """A push subscription's POST body carrying ``data`` (JSON-encoded unless bytes)."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    message_id = message_id or str(uuid.uuid4().int)[:16]
    envelope = {
        "message": {
            "data": base64.b64encode(raw).decode(),
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-12-06T10:00:00.000Z",
            "attributes": {},
        },
        "subscription": subscription,
    }
    return json.dumps(envelope).encode()


@dataclass
class OidcIssuer:
    """A signing key and the loopback URL serving its JWKS (see :func:`oidc_issuer`)."""

    jwks_url: str
    kid: str
    key: rsa.RSAPrivateKey
    fetches: list[float] = field(default_factory=list)
    # What the JWKS endpoint answers: "ok", "error" (HTTP 500) or "huge" (a 1 MiB document).
    serving: str = "ok"

    def token(
        self,
        audience: str,
        *,
        email: str = "pusher@test-project.iam.gserviceaccount.com",
        issuer: str = GOOGLE_ISSUER,
        lifetime_s: int = 600,
        key: rsa.RSAPrivateKey | None = None,
        kid: str | None = None,
    ) -> str:
        """A push-subscription OIDC token (RS256), as Google issues it; overrides forge one."""
        pem = (key or self.key).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        signer = crypt.RSASigner.from_string(pem, key_id=kid or self.kid)
        now = int(time.time())
        payload = {
            "iss": issuer,
            "aud": audience,
            "azp": "1234567890",
            "email": email,
            "email_verified": True,
            "iat": now if lifetime_s > 0 else now - 3600,
            "exp": now + lifetime_s,
            "sub": "1234567890",
        }
        return jwt.encode(signer, payload).decode()  # type: ignore[no-untyped-call]


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, str]:
    numbers = key.public_key().public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return {
        "kty": "RSA",
        "alg": "RS256",
        "use": "sig",
        "kid": kid,
        "n": b64(numbers.n),
        "e": b64(numbers.e),
    }


@contextlib.asynccontextmanager
async def oidc_issuer() -> AsyncIterator[OidcIssuer]:
    """Serve a fresh RSA key's JWKS on a loopback port; yield the issuer that signs with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer = OidcIssuer("", uuid.uuid4().hex, key)

    async def jwks(request: web.Request) -> web.StreamResponse:
        issuer.fetches.append(time.monotonic())
        if issuer.serving == "error":
            return web.json_response({"error": "unavailable"}, status=500)
        keys = [_jwk(issuer.key, issuer.kid)]
        if issuer.serving == "huge":
            keys = keys * 2000
        return web.json_response({"keys": keys})

    async with fake_server(jwks) as server:
        issuer.jwks_url = f"{server.url}/oauth2/v3/certs"
        yield issuer


@dataclass(frozen=True)
class PstestServer:
    """A running pstest fake: its ``HOST:PORT`` (Pub/Sub's gRPC API, plaintext)."""

    address: str


@contextlib.contextmanager
def pstest_server(log_dir: Path) -> Iterator[PstestServer]:
    """Run the pinned ``pstest-server`` on a free loopback port until the block exits."""
    binary = find_tool("pstest-server")
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "pstest.log").open("ab")
    proc = subprocess.Popen(
        [str(binary), "-listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=log
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()  # "ADDR host:port" once it listens
        if not line.startswith("ADDR "):
            raise RuntimeError(f"pstest-server did not start (exit {proc.poll()}); see {log_dir}")
        yield PstestServer(line.removeprefix("ADDR ").strip())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@dataclass
class PubSubAdmin:
    """Blocking GAPIC clients of a pstest fake: create a topic and subscription, publish, pull.

    Blocking: call it from a thread (``asyncio.to_thread``) inside async tests.
    """

    address: str
    project: str = "test-project"

    def __post_init__(self) -> None:
        """Open plaintext channels to the fake (it has no TLS and wants no credentials)."""
        import grpc  # noqa: PLC0415 - the fake's channel; only tests that use pstest need it
        from google.pubsub_v1 import PublisherClient, SubscriberClient  # noqa: PLC0415
        from google.pubsub_v1.services.publisher.transports import (  # noqa: PLC0415
            PublisherGrpcTransport,
        )
        from google.pubsub_v1.services.subscriber.transports import (  # noqa: PLC0415
            SubscriberGrpcTransport,
        )

        self.publisher = PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(self.address))
        )
        self.subscriber = SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(self.address))
        )

    def topic(self, name: str = "gcr") -> str:
        """The full name of topic ``name`` of the project."""
        return f"projects/{self.project}/topics/{name}"

    def subscription(self, name: str) -> str:
        """The full name of subscription ``name`` of the project."""
        return f"projects/{self.project}/subscriptions/{name}"

    def create(self, subscription: str, topic: str = "gcr", ack_deadline_s: int = 10) -> str:
        """Create ``topic`` (once) and a pull ``subscription`` on it; return its full name."""
        from google.api_core.exceptions import AlreadyExists  # noqa: PLC0415

        with contextlib.suppress(AlreadyExists):
            self.publisher.create_topic(name=self.topic(topic))
        name = self.subscription(subscription)
        self.subscriber.create_subscription(
            name=name, topic=self.topic(topic), ack_deadline_seconds=ack_deadline_s
        )
        return name

    def publish(self, data: Mapping[str, Any] | bytes, topic: str = "gcr") -> str:
        """Publish one message (JSON-encoded unless bytes); return its message id."""
        from google.pubsub_v1 import PubsubMessage  # noqa: PLC0415

        raw = data if isinstance(data, bytes) else json.dumps(data).encode()
        answer = self.publisher.publish(topic=self.topic(topic), messages=[PubsubMessage(data=raw)])
        return str(answer.message_ids[0])

    def pull(self, subscription: str, *, release: bool = True) -> list[str]:
        """Pull what is deliverable now; return the message ids (released again if ``release``)."""
        # Without messages Pub/Sub (and the fake, for 0.5 s) waits a little before answering.
        answer = self.subscriber.pull(subscription=subscription, max_messages=100)
        received = list(answer.received_messages)
        if received and release:
            self.subscriber.modify_ack_deadline(
                subscription=subscription,
                ack_ids=[r.ack_id for r in received],
                ack_deadline_seconds=0,
            )
        return [r.message.message_id for r in received]

    def close(self) -> None:
        """Close both channels."""
        self.publisher.transport.close()
        self.subscriber.transport.close()

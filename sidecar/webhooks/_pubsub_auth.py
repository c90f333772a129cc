"""Who may push Pub/Sub messages: the subscription's OIDC token, or a shared token in the URL.

A push subscription with authentication sends ``Authorization: Bearer <JWT>``: a token Google
signs (RS256) for the subscription's service account, with the audience the subscription names.
:class:`OidcVerifier` checks signature (keys from a JWKS, fetched over HTTPS and cached), issuer,
audience, expiry and, when configured, the service account's verified e-mail. The signature,
expiry and audience checks are google-auth's (``google.auth.jwt.decode``); this module only turns
the JWKS into the public keys it takes and checks what it does not (issuer, e-mail).

Without OIDC a push subscription cannot send headers, so its endpoint URL carries a shared secret:
``?token=<secret>``, or a proxy in front adds it as ``X-Pubsub-Token`` (:func:`check_push_token`,
constant-time).
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sidecar.config import OidcSettings
from sidecar.errors import WebhookRejected
from sidecar.telemetry import get_logger

__all__ = ["MAX_JWKS_BYTES", "TOKEN_HEADER", "OidcVerifier", "check_push_token", "jwks_keys"]

TOKEN_HEADER = "X-Pubsub-Token"  # noqa: S105 - a header name, not a secret

MAX_JWKS_BYTES = 256 * 1024
_MAX_TOKEN = 8 * 1024
# An unknown key id refetches the JWKS (Google rotates keys), but at most this often, so forged
# tokens with made-up key ids cannot make the sidecar hammer the key endpoint.
_REFETCH_S = 30.0
# Without (fresh) keys every request would fetch: at most once a second then.
_RETRY_EMPTY_S = 1.0
_FETCH_TIMEOUT_S = 10.0
_CURVES = {"P-256": ec.SECP256R1()}

_log = get_logger("sidecar.webhooks")


def _unauthorized(problem: str) -> WebhookRejected:
    return WebhookRejected(problem, status=401)


def check_push_token(query: str | None, header: str | None, token: str) -> None:
    """Raise WebhookRejected(401) unless the push carries ``token``: as ``?token=`` in the URL
    (a plain push subscription) or in the :data:`TOKEN_HEADER` header (behind a proxy that adds it).
    """
    given = query if query is not None else header
    if not given:
        raise _unauthorized(
            f"missing token (the push endpoint URL must carry ?token=<secret>, or {TOKEN_HEADER})"
        )
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise _unauthorized("wrong push token")


def _b64int(value: object) -> int:
    if not isinstance(value, str) or len(value) > 1400:
        raise ValueError("not a base64url number")
    return int.from_bytes(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)), "big")


def _pem(key: Mapping[str, Any]) -> bytes:
    kty = key.get("kty")
    if kty == "RSA":
        public: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = rsa.RSAPublicNumbers(
            _b64int(key.get("e")), _b64int(key.get("n"))
        ).public_key()
    elif kty == "EC" and key.get("crv") in _CURVES:
        public = ec.EllipticCurvePublicNumbers(
            _b64int(key.get("x")), _b64int(key.get("y")), _CURVES[str(key["crv"])]
        ).public_key()
    else:
        raise ValueError(f"unsupported key type {kty!r}")
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def jwks_keys(document: bytes) -> dict[str, bytes]:
    """Return the signing keys of a JWKS document by key id, as PEM; ValueError when unusable."""
    doc = orjson.loads(document)
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise ValueError("not a JWKS: no keys list")
    keys: dict[str, bytes] = {}
    for key in doc["keys"]:
        if not isinstance(key, dict) or key.get("use", "sig") != "sig":
            continue
        kid = key.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        try:
            keys[kid] = _pem(key)
        except ValueError as exc:  # one odd key (another algorithm) must not hide the rest
            _log.debug("JWKS key skipped", kid=kid, problem=str(exc))
    if not keys:
        raise ValueError("the JWKS has no usable RSA or P-256 signing key with a kid")
    return keys


class OidcVerifier:
    """Verifies push-subscription OIDC tokens against a JWKS fetched from ``jwks_url``."""

    def __init__(self, settings: OidcSettings) -> None:
        """Verify tokens for ``settings`` (audience, issuer, JWKS URL, service account)."""
        self._settings = settings
        self._keys: dict[str, bytes] = {}
        self._fetched = -float("inf")  # monotonic time of the last fetch attempt
        self._refreshed = -float("inf")  # ... and of the last successful one
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        """Close the HTTP session used for the JWKS."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def verify(self, authorization: str | None) -> Mapping[str, Any]:
        """Return the verified claims of ``Authorization: Bearer <JWT>``; WebhookRejected if not.

        401 for a missing, malformed, forged, expired or misaddressed token; 503 when no signing
        key could be fetched yet (the sender retries).
        """
        if not authorization:
            raise _unauthorized("missing Authorization header (want the subscription's OIDC token)")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("Authorization header is not a Bearer token")
        if len(token) > _MAX_TOKEN or token.count(".") != 2:
            raise _unauthorized("Bearer token is not a JWT")
        kid = _header_kid(token)
        keys = await self._keys_for(kid)
        claims = _decode(token, keys, self._settings)
        self._check_claims(claims)
        return claims

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        settings = self._settings
        issuer = claims.get("iss")
        # Google writes its issuer with and without the scheme.
        accepted = {settings.issuer, settings.issuer.removeprefix("https://")}
        if not isinstance(issuer, str) or issuer not in accepted:
            raise _unauthorized(f"token issuer {str(issuer)[:100]!r} is not {settings.issuer!r}")
        if settings.service_account:
            email = claims.get("email")
            if email != settings.service_account or claims.get("email_verified") is not True:
                raise _unauthorized(
                    f"token is not from service account {settings.service_account!r}"
                )

    def _due(self, kid: str) -> bool:
        now = time.monotonic()
        since = now - self._fetched
        if not self._keys or now - self._refreshed > self._settings.jwks_refresh_s:
            return since > _RETRY_EMPTY_S  # none yet, or stale (a failing endpoint: 1/s at most)
        return bool(kid) and kid not in self._keys and since > _REFETCH_S

    async def _keys_for(self, kid: str) -> dict[str, bytes]:
        # A fetch in flight is waited for: its keys are the ones this token needs.
        if self._due(kid) or self._lock.locked():
            async with self._lock:
                # Another request may have fetched while this one waited for the lock.
                if self._due(kid):
                    await self._fetch()
        if not self._keys:
            raise WebhookRejected(
                "cannot verify the OIDC token: no signing keys could be fetched", status=503
            )
        return self._keys

    async def _fetch(self) -> None:
        self._fetched = time.monotonic()
        url = self._settings.jwks_url
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=_FETCH_TIMEOUT_S)
            )
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}")
                body = await response.content.read(MAX_JWKS_BYTES + 1)
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"JWKS larger than {MAX_JWKS_BYTES} bytes")
            self._keys = jwks_keys(body)
            self._refreshed = time.monotonic()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # Keep the keys we had: a key endpoint outage must not refuse valid tokens.
            _log.warning("JWKS fetch failed", url=url, problem=f"{type(exc).__name__}: {exc}"[:300])


def _header_kid(token: str) -> str:
    header = token.split(".", 1)[0]
    try:
        doc = orjson.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        raise _unauthorized("Bearer token is not a JWT: unreadable header") from None
    if not isinstance(doc, dict):
        raise _unauthorized("Bearer token is not a JWT: header is not an object")
    if doc.get("alg") not in ("RS256", "ES256"):
        raise _unauthorized(f"token algorithm {str(doc.get('alg'))[:20]!r} is not RS256 or ES256")
    kid = doc.get("kid", "")
    return kid if isinstance(kid, str) else ""


def _decode(token: str, keys: Mapping[str, bytes], settings: OidcSettings) -> Mapping[str, Any]:
    from google.auth import exceptions, jwt  # noqa: PLC0415 - only with OIDC configured

    try:
        claims: Mapping[str, Any] = jwt.decode(  # type: ignore[no-untyped-call]
            token,
            certs=dict(keys),
            audience=settings.audience,
            clock_skew_in_seconds=int(settings.clock_skew_s),
        )
    except (exceptions.GoogleAuthError, ValueError) as exc:
        raise _unauthorized(f"OIDC token refused: {str(exc)[:200]}") from None
    except Exception as exc:  # odd claim types (a string exp) trip google-auth: fail closed
        raise _unauthorized(f"OIDC token refused: {type(exc).__name__}") from None
    if not isinstance(claims, Mapping):
        raise _unauthorized("OIDC token refused: its payload is not an object")
    return claims

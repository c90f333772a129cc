"""The push subscription's OIDC keys: fetched from a real JWKS endpoint, and its outages.

While no signing key could be fetched, a push is answered 503 (Pub/Sub retries it) rather than
accepted or refused as forged; once the endpoint answers, the same token is accepted. A key
endpoint that fails later does not lock out valid tokens: the keys already fetched are kept. An
oversized key document is not read past its limit.
"""

from __future__ import annotations

import asyncio

import pytest

from sidecar.config import OidcSettings
from sidecar.errors import WebhookRejected
from sidecar.webhooks import OidcVerifier
from tests.support.pubsub import oidc_issuer

pytestmark = pytest.mark.integration

AUDIENCE = "https://sidecar.example/v1/registry/events/pubsub"
PUSHER = "pusher@test-project.iam.gserviceaccount.com"


async def _status(verifier: OidcVerifier, token: str) -> int:
    try:
        await verifier.verify(f"Bearer {token}")
    except WebhookRejected as exc:
        return exc.status
    return 200


async def test_no_keys_yet_is_503_then_keys_are_fetched_and_kept() -> None:
    async with oidc_issuer() as issuer:
        settings = OidcSettings(
            audience=AUDIENCE, jwks_url=issuer.jwks_url, service_account=PUSHER, jwks_refresh_s=1
        )
        verifier = OidcVerifier(settings)
        token = issuer.token(AUDIENCE, email=PUSHER)
        try:
            issuer.serving = "huge"
            assert await _status(verifier, token) == 503
            issuer.serving = "error"
            await asyncio.sleep(1.1)  # an empty key set is fetched again at most once a second
            assert await _status(verifier, token) == 503
            issuer.serving = "ok"
            assert await _status(verifier, token) == 503  # within the second: not fetched yet
            await asyncio.sleep(1.1)
            assert await _status(verifier, token) == 200
            fetched = len(issuer.fetches)
            assert fetched == 3

            # The endpoint fails after the keys went stale: the old keys still verify.
            issuer.serving = "error"
            await asyncio.sleep(1.1)
            assert await _status(verifier, token) == 200
            assert len(issuer.fetches) == fetched + 1  # it did try
            other = issuer.token("https://other.example", email=PUSHER)
            assert await _status(verifier, other) == 401
        finally:
            await verifier.close()


async def test_concurrent_first_pushes_wait_for_the_one_key_fetch() -> None:
    # Regression (found by tests/bench/pubsub_push.py): while the first fetch was in flight, the
    # other pushes found no keys and were answered 503.
    async with oidc_issuer() as issuer:
        verifier = OidcVerifier(OidcSettings(audience=AUDIENCE, jwks_url=issuer.jwks_url))
        try:
            tokens = [issuer.token(AUDIENCE, email=PUSHER) for _ in range(8)]
            statuses = await asyncio.gather(*(_status(verifier, t) for t in tokens))
            assert statuses == [200] * 8
            assert len(issuer.fetches) == 1
        finally:
            await verifier.close()

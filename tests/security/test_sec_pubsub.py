"""Issue 14/15: forged and malformed Pub/Sub pushes on ``/v1/registry/events/pubsub``.

The attacker can reach the sidecar's webhook listener and knows the endpoint path (it is in the
docs), but holds neither the push token nor a key Google would sign with. Every forged or malformed
push must get a clear 4xx naming the problem, nothing may be queued in the inbox, and the sidecar
must keep serving: a genuine push is still recorded and a Decide still answered by OPA.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.pubsub import OidcIssuer, gcr_data, oidc_issuer, push_envelope
from tests.support.security import (
    CLOSED,
    assert_serving,
    attacked_sidecar,
    metric_value,
    sidecar_config,
)
from tests.support.sidecar import RunningSidecar
from tests.support.webhooks import free_port

pytestmark = pytest.mark.integration

SECRET = "distribution-secret"
TOKEN = "pubsub-push-token-8f1c"
PUSHER = "gcr-pusher@test-project.iam.gserviceaccount.com"
HOST = CLOSED.removeprefix("http://")  # the inventory's source registry ``ci``
DIGEST = "sha256:" + "ab" * 32
RECEIVED = "policy_sidecar_webhook_events_received_total"


def _valid(message_id: str) -> bytes:
    return push_envelope(
        gcr_data("INSERT", f"{HOST}/team/app", digest=DIGEST, tag="dev-1"), message_id=message_id
    )


def _raw_envelope(message: dict[str, Any]) -> bytes:
    return json.dumps({"message": message, "subscription": "projects/p/subscriptions/s"}).encode()


# name → body; each must be refused with 400 (413 for the oversized one) and queue nothing.
MALFORMED: dict[str, tuple[bytes, int, str]] = {
    "not json": (b"{not json", 400, "not JSON"),
    "empty": (b"", 400, "empty body"),
    "no message": (b'{"subscription": "x"}', 400, "no message"),
    "bad base64": (
        _raw_envelope({"messageId": "1", "data": "!!!not-base64!!!"}),
        400,
        "not valid base64",
    ),
    "data not json": (push_envelope(b"\xff\xfe garbage", message_id="2"), 400, "not JSON"),
    "no message id": (
        _raw_envelope({"data": base64.b64encode(b"{}").decode()}),
        400,
        "messageId",
    ),
    "unknown action": (
        push_envelope({"action": "EXPLODE", "digest": f"{HOST}/team/app@{DIGEST}"}, message_id="3"),
        400,
        "data.action",
    ),
    "no image": (push_envelope({"action": "INSERT"}, message_id="4"), 400, "names no image"),
    "digest and tag disagree": (
        push_envelope(
            {
                "action": "INSERT",
                "digest": f"{HOST}/team/app@{DIGEST}",
                "tag": f"{HOST}/team/other:dev-1",
            },
            message_id="5",
        ),
        400,
        "different images",
    ),
    "unknown host": (
        push_envelope(
            gcr_data("INSERT", "evil.example.com/team/app", digest=DIGEST, tag="dev-1"),
            message_id="6",
        ),
        400,
        "unknown registry",
    ),
    "oversized": (
        push_envelope({"action": "INSERT", "pad": "x" * 100_000}, message_id="7"),
        413,
        "over",
    ),
}


async def _post(
    url: str,
    body: bytes,
    *,
    token: str | None = None,
    bearer: str | None = None,
    header: str | None = None,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if header is not None:
        headers["X-Pubsub-Token"] = header
    params = {"token": token} if token is not None else None
    async with (
        aiohttp.ClientSession() as http,
        http.post(url, data=body, headers=headers, params=params) as got,
    ):
        return got.status, await got.json(content_type=None)


async def _nothing_queued(running: RunningSidecar) -> None:
    assert running.sidecar.parts is not None
    assert await running.sidecar.parts.store.pending_events() == []
    assert await metric_value(running, RECEIVED, {"outcome": "recorded"}) == 0
    assert await metric_value(running, RECEIVED, {"outcome": "duplicate"}) == 0


def _doc(port: int, pubsub: dict[str, Any]) -> dict[str, Any]:
    return sidecar_config(
        replication={"webhook": {"listen": f"127.0.0.1:{port}", "secret": SECRET, "pubsub": pubsub}}
    )


async def _still_serving(running: RunningSidecar, url: str, **auth: str) -> None:
    status, answer = await _post(url, _valid("9000000000000001"), **auth)
    assert (status, answer) == (200, {"recorded": 1})
    await assert_serving(running)


async def test_token_mode_refuses_wrong_tokens_and_malformed_pushes(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/registry/events/pubsub"
    async with attacked_sidecar(_doc(port, {"push": True, "token": TOKEN}), tmp_path) as running:
        for token in (None, "", "wrong", TOKEN[:-1], TOKEN + "x"):
            status, answer = await _post(url, _valid("100"), token=token)
            assert status == 401, (token, status, answer)
            assert "token" in answer["error"], answer
        # The Distribution secret is not the push token, and a Bearer header is not a URL token.
        assert (await _post(url, _valid("101"), token=SECRET))[0] == 401
        assert (await _post(url, _valid("102"), bearer=TOKEN))[0] == 401
        assert (await _post(url, _valid("103"), header="wrong"))[0] == 401
        # The URL's token decides when both are given: a right header does not rescue a wrong one.
        assert (await _post(url, _valid("104"), token="wrong", header=TOKEN))[0] == 401
        for name, (body, want, says) in MALFORMED.items():
            status, answer = await _post(url, body, token=TOKEN)
            assert status == want, (name, status, answer)
            assert says in answer["error"], (name, answer)
        await _nothing_queued(running)
        await _still_serving(running, url, token=TOKEN)
        # A proxy in front may send the token as a header instead.
        status, answer = await _post(url, _valid("9000000000000002"), header=TOKEN)
        assert (status, answer) == (200, {"recorded": 1})


def _forged_tokens(issuer: OidcIssuer, audience: str) -> dict[str, str]:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    good = issuer.token(audience, email=PUSHER)
    header, payload, _ = good.split(".")
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return {
        "signed by another key, our kid": issuer.token(audience, email=PUSHER, key=stranger),
        "signed by another key, its kid": issuer.token(
            audience, email=PUSHER, key=stranger, kid="attacker"
        ),
        "alg none": f"{none_header}.{payload}.",
        "signature stripped": f"{header}.{payload}.",
        "payload swapped": f"{header}.{issuer.token('other', email=PUSHER).split('.')[1]}."
        + good.split(".")[2],
        "expired": issuer.token(audience, email=PUSHER, lifetime_s=-60),
        "wrong audience": issuer.token("https://elsewhere.example/push", email=PUSHER),
        "wrong issuer": issuer.token(audience, email=PUSHER, issuer="https://evil.example"),
        "other service account": issuer.token(audience, email="someone@evil.iam.example"),
        "not a jwt": "garbage",
    }


async def test_oidc_mode_refuses_forged_tokens_and_malformed_pushes(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/registry/events/pubsub"
    async with oidc_issuer() as issuer:
        pubsub = {
            "push": True,
            "oidc": {"audience": url, "jwks_url": issuer.jwks_url, "service_account": PUSHER},
        }
        async with attacked_sidecar(_doc(port, pubsub), tmp_path) as running:
            status, answer = await _post(url, _valid("200"))
            assert status == 401 and "Authorization" in answer["error"], answer
            for name, token in _forged_tokens(issuer, url).items():
                status, answer = await _post(url, _valid("201"), bearer=token)
                assert status == 401, (name, status, answer)
                assert answer["error"], (name, answer)
            # Forged key ids refetch the JWKS at most every 30 s: no amplification.
            assert len(issuer.fetches) <= 2, issuer.fetches
            good = issuer.token(url, email=PUSHER)
            for name, (body, want, says) in MALFORMED.items():
                status, answer = await _post(url, body, bearer=good)
                assert status == want, (name, status, answer)
                assert says in answer["error"], (name, answer)
            await _nothing_queued(running)
            await _still_serving(running, url, bearer=good)

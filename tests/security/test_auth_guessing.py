"""Attacks on the data plane's token checks (issue 15, item 3): guessing floods and a greedy caller.

A bcrypt-hashed token costs ~0.1-0.3 s of CPU to check, so before ``policy.auth.failed_auth_limit``
every made-up token from one host bought that much of the sidecar's bcrypt pool; and one identity
could take every decision slot. Each attack asserts the refusal, that callers with cheap
credentials on the same host are still served, and that the refusals are counted.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import bcrypt
import grpc
import pytest
import pytest_asyncio

from sidecar.config import AdminToken, AuthFailureLimit, AuthRateLimit
from tests.support.admin import TlsMaterial, bearer, tls_material
from tests.support.data_plane_auth import (
    TOKENS,
    auth_config,
    decide_request,
    short_socket_dir,
    token,
)
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

_BURST = 3  # failed authentications a peer may have at once (the limit under test)
_IDENTITY_BURST = 8  # calls one identity may make at once


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return tls_material(tmp_path_factory.mktemp("pki"))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(
    tmp_path_factory: pytest.TempPathFactory, pki: TlsMaterial
) -> AsyncIterator[RunningSidecar]:
    # One bcrypt-hashed token beside the sha256 ones: every unknown token then costs a bcrypt check.
    hashed = bcrypt.hashpw(b"bcrypt-ci-secret", bcrypt.gensalt(rounds=10)).decode()
    tokens = (
        *(
            AdminToken(subject, hashlib.sha256(secret.encode()).hexdigest())
            for subject, secret in TOKENS.items()
        ),
        AdminToken("bcrypt-ci", bcrypt=hashed),
    )
    config = auth_config(
        tmp_path_factory.mktemp("auth-guessing"),
        pki,
        short_socket_dir() / "policy.sock",
        bindings={"token:bcrypt-ci": {"roles": ["replicator"], "tenant": "acme"}},
        tokens=tokens,
        failed_auth_limit=AuthFailureLimit(rate=0.01, burst=_BURST),
        rate_limit=AuthRateLimit(rate=0.5, burst=_IDENTITY_BURST),
    )
    async with running_sidecar(config) as running:
        yield running


def _metric(sidecar: RunningSidecar, name: str, **labels: str) -> float:
    registry = sidecar.sidecar.telemetry.metrics_registry
    return registry.get_sample_value(name, labels) or 0.0


async def _code(sidecar: RunningSidecar, metadata: tuple[tuple[str, str], ...]) -> grpc.StatusCode:
    try:
        await sidecar.stub.Decide(decide_request(), metadata=metadata, timeout=30)
    except grpc.aio.AioRpcError as refused:
        return refused.code()
    return grpc.StatusCode.OK


async def test_a_token_guessing_flood_is_cut_off_before_bcrypt_and_cheap_callers_stay_served(
    sidecar: RunningSidecar,
) -> None:
    guesses = [await _code(sidecar, bearer(f"guess-{n}")) for n in range(_BURST + 20)]
    # The first guesses are checked (and fail); the rest are refused unchecked.
    assert guesses[:_BURST] == [grpc.StatusCode.UNAUTHENTICATED] * _BURST
    assert set(guesses[_BURST:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    refused = _metric(
        sidecar,
        "policy_sidecar_data_plane_refusals_total",
        action="Decide",
        code="resource_exhausted",
    )
    assert refused >= 20
    # Same host, cheap credentials (a sha256-hashed token): served as before.
    answer = await sidecar.stub.Decide(decide_request(), metadata=token("acme-ci"), timeout=30)
    assert answer.decision_id and answer.decision.allow
    # A bcrypt token never verified is an expensive check: it waits out the throttle too.
    assert await _code(sidecar, bearer("bcrypt-ci-secret")) == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_one_identity_over_its_rate_is_refused_and_others_are_not(
    sidecar: RunningSidecar,
) -> None:
    codes = [await _code(sidecar, token("globex-ci")) for _ in range(_IDENTITY_BURST + 4)]
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert codes.index(grpc.StatusCode.RESOURCE_EXHAUSTED) >= _IDENTITY_BURST - 1
    with_limit = await _refusal_detail(sidecar, token("globex-ci"))
    assert "policy.auth.rate_limit" in with_limit and "token:globex-ci" in with_limit
    # Another identity is untouched by globex's spending.
    answer = await sidecar.stub.Decide(decide_request(), metadata=token("acme-ci"), timeout=30)
    assert answer.decision_id


async def _refusal_detail(sidecar: RunningSidecar, metadata: tuple[tuple[str, str], ...]) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.stub.Decide(decide_request(), metadata=metadata, timeout=30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    return refused.value.details() or ""


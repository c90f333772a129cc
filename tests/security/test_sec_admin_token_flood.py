"""Issue 15: ``bcrypt.checkpw`` ran on the event loop for every unknown admin token.

Each check of a cost-12 hash takes ~0.25 s of CPU; on the loop, every unauthenticated admin call
stalled every decision for that long. The attack floods the admin API with made-up bearer tokens
while an ordinary caller keeps deciding; the checks now run on a 2-thread pool off the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from pathlib import Path

import bcrypt
import grpc
import pytest

from sidecar._proto import policy_pb2 as pb
from tests.support.admin import admin_stub, bearer
from tests.support.security import (
    DecisionLoad,
    assert_serving,
    attacked_sidecar,
    sidecar_config,
)

pytestmark = pytest.mark.integration

FLOOD = 16
# Refused either way: unknown (UNAUTHENTICATED) or, where a per-identity rate limit answers
# first, RESOURCE_EXHAUSTED. Never a success, never an internal error.
REFUSALS = {grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.RESOURCE_EXHAUSTED}


async def test_a_flood_of_unknown_admin_tokens_does_not_stall_decisions(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"the-real-operator-token", bcrypt.gensalt(12))
    started = time.perf_counter()
    bcrypt.checkpw(b"a-guess", hashed)
    check_s = time.perf_counter() - started  # one check's cost on this machine, now
    doc = sidecar_config(admin={"tokens": [{"subject": "ops", "bcrypt": hashed.decode()}]})
    async with attacked_sidecar(doc, tmp_path) as running:
        await assert_serving(running)
        admin = admin_stub(running.channel)

        async def guess(n: int) -> grpc.StatusCode:
            try:
                await admin.ListRevisions(
                    pb.ListRevisionsRequest(), metadata=bearer(f"guess-{n}"), timeout=120
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

        async with DecisionLoad(running.stub, 1) as load:
            flood_started = time.perf_counter()
            codes = await asyncio.gather(*(guess(n) for n in range(FLOOD)))
            flood_s = time.perf_counter() - flood_started
        assert set(codes) <= REFUSALS, codes
        assert not load.errors, load.errors[:3]
        # On the loop, the flood blocked decisions for ~FLOOD checks; off it, one caller deciding
        # back to back gets many answers, each far quicker than one check.
        assert len(load.latencies) >= 10, (len(load.latencies), flood_s, check_s)
        assert statistics.median(load.latencies) < check_s / 2, (load.latencies, check_s)
        assert max(load.latencies) < check_s * 2, (max(load.latencies), check_s)
        await assert_serving(running)


async def test_a_guessing_peer_gets_no_more_bcrypt_checks_but_cheap_tokens_still_count(
    tmp_path: Path,
) -> None:
    hashed = bcrypt.hashpw(b"the-real-operator-token", bcrypt.gensalt(12))
    viewer = hashlib.sha256(b"viewer-secret").hexdigest()
    doc = sidecar_config(
        admin={
            "tokens": [
                {"subject": "ops", "bcrypt": hashed.decode()},
                {"subject": "viewer", "sha256": viewer},
            ],
            # Three failed calls per peer, then (practically) none: the bucket under test.
            "rate_limit": {"rate": 0.01, "burst": 3},
        }
    )
    async with attacked_sidecar(doc, tmp_path) as running:
        admin = admin_stub(running.channel)

        async def call(secret: str) -> tuple[grpc.StatusCode, float]:
            started = time.perf_counter()
            try:
                await admin.ListRevisions(
                    pb.ListRevisionsRequest(), metadata=bearer(secret), timeout=120
                )
            except grpc.aio.AioRpcError as exc:
                return exc.code(), time.perf_counter() - started
            return grpc.StatusCode.OK, time.perf_counter() - started

        guesses = [await call(f"guess-{n}") for n in range(12)]
        codes = [code for code, _ in guesses]
        assert codes[:3] == [grpc.StatusCode.UNAUTHENTICATED] * 3, codes
        assert set(codes[3:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        # Refused before any bcrypt check: each far quicker than one cost-12 check (~0.25 s).
        assert max(seconds for _, seconds in guesses[3:]) < 0.2, guesses
        # The same host's sha256-hashed token is still checked: authenticated, then authorised
        # (the default bundle binds nobody, so PERMISSION_DENIED, not RESOURCE_EXHAUSTED).
        code, _ = await call("viewer-secret")
        assert code == grpc.StatusCode.PERMISSION_DENIED
        await assert_serving(running)

"""Admin bearer tokens: bcrypt checks run off the event loop and verified tokens are remembered.

Issue 15: ``bcrypt.checkpw`` ran on the event loop for every presented token, so a stream of
unknown tokens stalled every decision the sidecar was serving meanwhile.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import pytest

from sidecar.config import AdminToken
from sidecar.governance.identity import Authenticator, Caller, CallerUnknown, hash_token

GOOD = "good-token"
HASHED = bcrypt.hashpw(GOOD.encode(), bcrypt.gensalt(4)).decode()


async def _authenticate(auth: Authenticator, bearer: str, **kwargs: Any) -> Caller:
    result: Any = auth.authenticate("ipv4:127.0.0.1:1", bearer, **kwargs)
    return await result if inspect.isawaitable(result) else result  # type: ignore[no-any-return]


def _authenticator(*tokens: AdminToken) -> Authenticator:
    return Authenticator(tokens or (AdminToken("ops", bcrypt=HASHED),), None, require_tls=False)


async def test_a_decision_progresses_while_bcrypt_checks_a_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    started, release = threading.Event(), threading.Event()
    order: list[str] = []
    real = bcrypt.checkpw

    def slow_checkpw(token: bytes, hashed: bytes) -> bool:
        # Blocks until the other coroutine ran, which it only can if this is not on the loop.
        started.set()
        released = release.wait(timeout=2)
        order.append("bcrypt done")
        return released and bool(real(token, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", slow_checkpw)

    async def decision() -> None:
        await asyncio.to_thread(started.wait, 5)
        order.append("decision served")
        release.set()

    caller, _ = await asyncio.gather(_authenticate(_authenticator(), GOOD), decision())
    assert order == ["decision served", "bcrypt done"]
    assert caller == Caller("token:ops", ("token:ops",), "token")


async def test_a_verified_token_is_remembered_and_unknown_ones_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(token: bytes, hashed: bytes) -> bool:
        calls.append(token)
        return bool(real(token, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    expires = datetime(2030, 1, 1, tzinfo=UTC)
    auth = _authenticator(AdminToken("ops", bcrypt=HASHED, expires_at=expires))
    for _ in range(3):
        assert (await _authenticate(auth, GOOD)).subject == "token:ops"
    assert calls == [GOOD.encode()]
    for _ in range(2):
        with pytest.raises(CallerUnknown, match="unknown bearer token"):
            await _authenticate(auth, "wrong")
    assert calls == [GOOD.encode(), b"wrong", b"wrong"]
    # Expiry is checked on every call, remembered or not.
    with pytest.raises(CallerUnknown, match="expired"):
        await _authenticate(auth, GOOD, now=expires + timedelta(seconds=1))


async def test_sha256_tokens_still_match_first() -> None:
    auth = _authenticator(
        AdminToken("bc", bcrypt=HASHED), AdminToken("plain", sha256=hash_token("plain-token"))
    )
    assert (await _authenticate(auth, "plain-token")).subject == "token:plain"
    assert (await _authenticate(auth, GOOD)).subject == "token:bc"

"""The CLI's channel to PolicyService: plaintext, with the bearer token of $POLICY_SIDECAR_TOKEN.

A sidecar with ``policy.auth`` refuses calls without credentials; the token comes from the
environment only (a flag would show up in ``ps`` and shell history).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, cast

import grpc

__all__ = ["TOKEN_ENV", "caller_subject", "data_plane_channel"]

TOKEN_ENV = "POLICY_SIDECAR_TOKEN"  # noqa: S105 - a variable name, not a secret


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add("authorization", f"Bearer {token}")
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


class _Bearer(grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]  # stubs' generics
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_token(details, self._token), request)

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_token(details, self._token), request)


def data_plane_channel(server: str) -> grpc.aio.Channel:
    """Return a channel to ``server``; each call carries $POLICY_SIDECAR_TOKEN when it is set."""
    token = os.environ.get(TOKEN_ENV, "").strip()
    interceptors = cast(Any, [_Bearer(token)]) if token else None  # stubs want a cast per kind
    return grpc.aio.insecure_channel(server, interceptors=interceptors)


def caller_subject(given: str | None) -> str:
    """Return the request's caller subject: ``given``, else "" with a token (the sidecar derives
    it from the token; any other subject would be refused as a widening), else ``cli``."""
    if given is not None:
        return given
    return "" if os.environ.get(TOKEN_ENV, "").strip() else "cli"

"""A tiny aiohttp reverse proxy in front of a real registry: faults and a bearer-token front door.

Faults (set on ``OciProxy.faults`` while running) cut blob bodies mid-stream, corrupt manifests,
answer every request (or only the next ``status_budget`` ones: a burst) with a chosen status and
``Retry-After``, or partition uploads: every write (POST/PATCH/PUT/DELETE) is held unanswered
until the client gives up or ``partition`` is cleared, while reads and the ``/v2/`` probe pass,
or lose the answers of upload-completing PUTs that did reach the registry.
What the faults answered is logged in ``OciProxy.answered`` and how long held writes waited in
``OciProxy.held``. With ``bearer=(user, password)`` the proxy acts
like Docker Hub's auth: 401 with a ``Bearer realm=…/token`` challenge, a token endpoint that
checks basic credentials and hands out short-lived tokens per scope, and only requests carrying
a valid token are forwarded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

__all__ = ["Faults", "OciProxy", "oci_proxy"]

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "authorization"}


@dataclass
class Faults:
    """What the proxy breaks; change it between requests."""

    truncate_blobs: bool = False
    corrupt_manifests: bool = False
    status: int | None = None
    retry_after: str = ""
    # When set, ``status`` answers only this many more requests, then clears itself.
    status_budget: int | None = None
    # Writes are held unanswered (reads pass) while this is true.
    partition: bool = False
    # The next N upload-completing PUTs reach the registry, but their answer is lost (the
    # connection drops), like a link cut right after the request got through.
    lose_upload_answers: int = 0


@dataclass
class OciProxy:
    """A running proxy: its URL, faults, and what clients asked of it."""

    url: str
    upstream: str
    faults: Faults = field(default_factory=Faults)
    token_requests: list[dict[str, list[str]]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    tokens: dict[str, list[str]] = field(default_factory=dict)
    # (monotonic time, "METHOD path") of every request, in arrival order.
    timeline: list[tuple[float, str]] = field(default_factory=list)
    # (monotonic time, "METHOD path", status) of every answer a fault gave instead of upstream.
    answered: list[tuple[float, str, int]] = field(default_factory=list)
    # Seconds each partitioned write was held before its client gave up (or the partition ended).
    held: list[float] = field(default_factory=list)


def _unauthorized(proxy: OciProxy, scope: str) -> web.Response:
    challenge = f'Bearer realm="{proxy.url}/token",service="test-registry"'
    if scope:
        challenge += f',scope="{scope}"'
    return web.json_response(
        {"errors": [{"code": "UNAUTHORIZED"}]}, status=401, headers={"WWW-Authenticate": challenge}
    )


def _token_handler(proxy: OciProxy, user: str, password: str) -> _Handler:
    async def token(request: web.Request) -> web.Response:
        scopes = request.query.getall("scope", [])
        proxy.token_requests.append(
            {"scope": scopes, "service": request.query.getall("service", [])}
        )
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"errors": [{"code": "DENIED"}]}, status=401)
        issued = secrets.token_hex(8)
        proxy.tokens[issued] = scopes
        return web.json_response({"token": issued, "expires_in": 300})

    return token


def _forward_handler(proxy: OciProxy, session: aiohttp.ClientSession, bearer: bool) -> _Handler:
    async def forward(request: web.Request) -> web.StreamResponse:
        proxy.requests.append(f"{request.method} {request.path_qs}")
        proxy.timeline.append((time.monotonic(), f"{request.method} {request.path}"))
        if bearer:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            if given not in proxy.tokens:
                repo = request.path.split("/")[2] if request.path.count("/") > 2 else ""
                return _unauthorized(proxy, f"repository:{repo}:pull" if repo else "")
        faults = proxy.faults
        if faults.partition and request.method not in ("GET", "HEAD"):
            await _hold(proxy, request)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=504)  # nobody is listening any more
        if faults.status is not None:
            status = faults.status
            if faults.status_budget is not None:
                faults.status_budget -= 1
                if faults.status_budget <= 0:
                    faults.status, faults.status_budget = None, None
            headers = {"Retry-After": faults.retry_after} if faults.retry_after else {}
            proxy.answered.append((time.monotonic(), f"{request.method} {request.path}", status))
            return web.json_response({"errors": []}, status=status, headers=headers)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        body = await request.read()
        async with session.request(
            request.method,
            proxy.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            allow_redirects=False,
        ) as upstream:
            data = await upstream.read()
            out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
            if "Location" in out:
                out["Location"] = out["Location"].replace(proxy.upstream, proxy.url)
            status = upstream.status
        lose = request.method == "PUT" and "/blobs/uploads/" in request.path
        if lose and faults.lose_upload_answers > 0 and request.transport is not None:
            faults.lose_upload_answers -= 1
            request.transport.close()
            return web.Response(status=502)  # never sent: the connection is already gone
        is_get = request.method == "GET" and status == 200
        if is_get and faults.corrupt_manifests and "/manifests/" in request.path:
            data = data.replace(b'"size"', b'"size" ', 1)  # still JSON, different digest
        if is_get and faults.truncate_blobs and "/blobs/" in request.path:
            out["Content-Length"] = str(len(data))
            response = web.StreamResponse(status=200, headers=out)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.close()  # the client sees a body shorter than Content-Length
            return response
        return web.Response(body=data, status=status, headers=out)

    return forward


async def _hold(proxy: OciProxy, request: web.Request) -> None:
    """Wait while the partition lasts and the client is still connected; log how long."""
    started = time.monotonic()
    while proxy.faults.partition:
        if request.transport is None or request.transport.is_closing():
            break  # the client gave up
        await asyncio.sleep(0.05)
    proxy.held.append(time.monotonic() - started)


@contextlib.asynccontextmanager
async def oci_proxy(
    upstream: str, *, bearer: tuple[str, str] | None = None
) -> AsyncIterator[OciProxy]:
    """Run a proxy to ``upstream`` on a free loopback port until the block exits."""
    async with aiohttp.ClientSession() as session:
        # Routes are fixed before the server starts; the URL (free port) is filled in after.
        proxy = OciProxy(url="", upstream=upstream.rstrip("/"))
        app = web.Application(client_max_size=64 << 20)
        if bearer is not None:
            app.router.add_get("/token", _token_handler(proxy, *bearer))
        app.router.add_route(
            "*", "/{tail:.*}", _forward_handler(proxy, session, bearer is not None)
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            proxy.url = f"http://127.0.0.1:{port}"
            yield proxy
        finally:
            await runner.cleanup()

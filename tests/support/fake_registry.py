"""A tiny scripted HTTP server on loopback that records every request and its Authorization."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    authorization: str | None


@dataclass
class FakeServer:
    """A running fake: its ``url`` (``http://127.0.0.1:port``) and the requests it saw."""

    url: str
    seen: list[Seen] = field(default_factory=list)

    def authorized(self) -> list[Seen]:
        """The requests that carried an ``Authorization`` header."""
        return [s for s in self.seen if s.authorization]


@asynccontextmanager
async def fake_server(handler: Handler) -> AsyncIterator[FakeServer]:
    """Serve ``handler`` for every method and path on an ephemeral loopback port."""
    server = FakeServer("")

    async def record(request: web.Request) -> web.StreamResponse:
        server.seen.append(
            Seen(request.method, request.path_qs, request.headers.get("Authorization"))
        )
        return await handler(request)

    app = web.Application(client_max_size=16 << 20)
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    server.url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()

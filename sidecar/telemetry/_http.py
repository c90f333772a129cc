"""The sidecar's plain-HTTP endpoint: Prometheus /metrics, liveness /healthz, readiness /readyz."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["MetricsServer", "Readiness"]

Readiness = Callable[[], tuple[bool, str] | Awaitable[tuple[bool, str]]]
"""Answers "can this process serve decisions?" as (ready, reason); may be sync or async."""


class MetricsServer:
    """Serves /metrics, /healthz and /readyz; extend it through ``routes`` or ``app``."""

    def __init__(
        self,
        registry: CollectorRegistry,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        ready: Readiness | None = None,
        routes: Iterable[web.AbstractRouteDef] = (),
    ) -> None:
        """Prepare (not start) the server; port 0 picks a free port, readable from ``.port``."""
        self._registry = registry
        self._host = host
        self._requested_port = port
        self._ready = ready
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self.app = web.Application()
        """The aiohttp app; add routes (e.g. webhooks) before start(), which freezes the router."""
        self.app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
            ]
        )
        self.app.add_routes(list(routes))

    @property
    def port(self) -> int:
        """The bound TCP port; only valid after start()."""
        if self._port is None:
            raise RuntimeError("MetricsServer.port is only known after start()")
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the running server, e.g. ``http://127.0.0.1:9464``."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving; returns once the port accepts connections."""
        if self._runner is not None:
            return
        # Request logging is off: scrapes every few seconds would drown the decision logs.
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._requested_port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = _bound_port(runner, self._requested_port)

    async def stop(self) -> None:
        """Stop serving and release the port; safe to call twice."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        # choose_encoder honours a scraper asking for OpenMetrics and falls back to text format.
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(self._registry), headers={"Content-Type": content_type})

    async def _healthz(self, _request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _readyz(self, _request: web.Request) -> web.Response:
        if self._ready is None:
            return web.json_response({"ready": True, "reason": "ready"})
        try:
            answer = self._ready()
            ready, reason = await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:  # a failing probe means "not ready", never a 500
            ready, reason = False, f"readiness check failed: {exc!r}"
        return web.json_response({"ready": ready, "reason": reason}, status=200 if ready else 503)


def _bound_port(runner: web.AppRunner, requested: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return requested

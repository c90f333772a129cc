"""A streaming, counting HTTP reverse proxy in front of a registry, run as its own process.

It counts every request it forwards (by method) and the body bytes in each direction, split by
what the path addresses (``blob``: ``/blobs/`` incl. uploads, ``manifest``: ``/manifests/``,
``other``). Bodies are streamed, never buffered, so multi-hundred-MB blobs pass at loopback speed.
Running it in a separate process keeps its CPU off the event loop of a copier it measures.

Control endpoints (not forwarded, not counted): ``GET /-/counts`` answers the counts as JSON,
``POST /-/reset`` zeroes them. :func:`counting_proxy` starts one for tests and benchmarks::

    with counting_proxy(registry.url) as proxy:
        ...  # point a client at proxy.url
        counts = proxy.counts()

Run by hand: ``python -m tests.support.counting_proxy UPSTREAM_URL`` prints its URL, then serves.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

__all__ = ["CountingProxy", "Counts", "counting_proxy"]

_HOP_HEADERS = {"host", "transfer-encoding", "connection", "keep-alive", "content-length"}
_BUFFER = 1 << 20
_KINDS = ("blob", "manifest", "other")


@dataclass
class Counts:
    """What passed through the proxy since the last reset."""

    requests: int = 0
    methods: Counter[str] = field(default_factory=Counter)
    bytes_in: Counter[str] = field(default_factory=Counter)  # request bodies, by kind
    bytes_out: Counter[str] = field(default_factory=Counter)  # response bodies, by kind

    def as_json(self) -> dict[str, Any]:
        """The counts as a JSON object (every kind present, zero when nothing passed)."""
        return {
            "requests": self.requests,
            "methods": dict(sorted(self.methods.items())),
            "bytes_in": {kind: self.bytes_in[kind] for kind in _KINDS},
            "bytes_out": {kind: self.bytes_out[kind] for kind in _KINDS},
        }


def _kind(path: str) -> str:
    if "/blobs/" in path:
        return "blob"
    return "manifest" if "/manifests/" in path else "other"


def _app(upstream: str, session: aiohttp.ClientSession, public: list[str]) -> web.Application:
    counts = Counts()

    async def control(request: web.Request) -> web.Response:
        nonlocal counts
        if request.method == "POST" and request.path == "/-/reset":
            counts = Counts()
        return web.json_response(counts.as_json())

    async def forward(request: web.Request) -> web.StreamResponse:
        tally = counts  # a reset during a request does not move its bytes to the new tally
        kind = _kind(request.path)
        tally.requests += 1
        tally.methods[request.method] += 1
        # A multidict: clients send several Accept headers, and each one counts.
        headers = CIMultiDict(
            (k, v) for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS
        )
        body: AsyncIterator[bytes] | None = None
        if request.body_exists:

            async def relay() -> AsyncIterator[bytes]:
                async for chunk in request.content.iter_any():
                    tally.bytes_in[kind] += len(chunk)
                    yield chunk

            body = relay()
            if request.content_length is not None:
                headers["Content-Length"] = str(request.content_length)
        async with session.request(
            request.method,
            upstream + request.path_qs,
            headers=headers,
            data=body,
            allow_redirects=False,
            auto_decompress=False,
        ) as answer:
            out = CIMultiDict(
                (k, v.replace(upstream, public[0]) if k.lower() == "location" else v)
                for k, v in answer.headers.items()
                if k.lower() not in _HOP_HEADERS
            )
            response = web.StreamResponse(status=answer.status, headers=out)
            if answer.content_length is not None:
                response.content_length = answer.content_length
            await response.prepare(request)
            if request.method != "HEAD":
                async for chunk in answer.content.iter_any():
                    tally.bytes_out[kind] += len(chunk)
                    await response.write(chunk)
            await response.write_eof()
            return response

    app = web.Application(handler_args={"read_bufsize": _BUFFER})
    app.router.add_route("*", "/-/{action}", control)
    app.router.add_route("*", "/{tail:.*}", forward)
    return app


async def _serve(upstream: str, port: int) -> None:
    upstream = upstream.rstrip("/")
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        read_bufsize=_BUFFER,
        skip_auto_headers=("Accept-Encoding", "User-Agent"),
    ) as session:
        public = [""]
        runner = web.AppRunner(_app(upstream, session, public), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        public[0] = f"http://127.0.0.1:{bound}"
        print(public[0], flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()


@dataclass(frozen=True)
class CountingProxy:
    """A running counting proxy: its URL, the upstream it forwards to, and its process."""

    url: str
    upstream: str
    process: subprocess.Popen[str]

    def _call(self, method: str, action: str) -> dict[str, Any]:
        request = urllib.request.Request(f"{self.url}/-/{action}", method=method)  # noqa: S310
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback
            doc: dict[str, Any] = json.loads(answer.read())
        return doc

    def counts(self) -> dict[str, Any]:
        """The counts since the last reset (see :meth:`Counts.as_json`)."""
        return self._call("GET", "counts")

    def reset(self) -> None:
        """Zero the counts."""
        self._call("POST", "reset")


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[CountingProxy]:
    """Run a counting proxy process in front of ``upstream`` until the block exits."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.counting_proxy", upstream],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # the repository, whatever the caller's cwd
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError(
                f"counting proxy for {upstream} did not start (exit {process.poll()})"
            )
        yield CountingProxy(url, upstream, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    """Serve a counting proxy to the upstream given on the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("upstream", help="base URL of the registry, e.g. http://127.0.0.1:5000")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: free)")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.upstream, args.port))


if __name__ == "__main__":
    main()

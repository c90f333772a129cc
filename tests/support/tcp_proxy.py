"""A small asyncio TCP proxy for a slow, flaky link: added latency and connections cut mid-transfer.

Transparent at the byte level, so HTTP clients keep using the proxy's ``host:port`` (Distribution
builds upload ``Location`` URLs from the Host header, which stays the proxy's). Faults are set on
``TcpProxy.faults`` while it runs; a seeded RNG picks where each connection is cut, so a run is
reproducible up to scheduling.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

__all__ = ["LinkFaults", "TcpProxy", "tcp_proxy"]

_CHUNK = 16 << 10


@dataclass
class LinkFaults:
    """What the link does to traffic; change it between connections."""

    # Added before each chunk is forwarded, in both directions.
    latency_s: float = 0.0
    # Each new connection is cut (reset) after carrying a random byte count in this range.
    cut_after: tuple[int, int] | None = None


@dataclass
class TcpProxy:
    """A running proxy: its address, its faults and what it did."""

    host: str
    port: int
    faults: LinkFaults = field(default_factory=LinkFaults)
    rng: random.Random = field(default_factory=random.Random)
    connections: int = 0
    cuts: int = 0
    bytes_forwarded: int = 0

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy."""
        return f"http://{self.host}:{self.port}"


class _Link:
    """One proxied connection: two pumps sharing a byte budget; the first to exhaust it cuts."""

    def __init__(self, proxy: TcpProxy, budget: int | None) -> None:
        self.proxy, self.budget = proxy, budget
        self.writers: list[asyncio.StreamWriter] = []

    def cut(self) -> None:
        self.proxy.cuts += 1
        for writer in self.writers:
            writer.transport.abort()  # RST, not FIN: the peer sees the transfer die mid-way

    async def pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(_CHUNK):
                if self.proxy.faults.latency_s:
                    await asyncio.sleep(self.proxy.faults.latency_s)
                if self.budget is not None and len(data) >= self.budget:
                    writer.write(data[: self.budget])
                    await writer.drain()
                    self.cut()
                    return
                if self.budget is not None:
                    self.budget -= len(data)
                self.proxy.bytes_forwarded += len(data)
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            for other in self.writers:
                other.transport.abort()


@contextlib.asynccontextmanager
async def tcp_proxy(
    upstream_host: str, upstream_port: int, *, seed: int = 0, faults: LinkFaults | None = None
) -> AsyncIterator[TcpProxy]:
    """Proxy loopback connections to ``upstream_host:upstream_port`` until the block exits."""
    proxy = TcpProxy("127.0.0.1", 0, faults or LinkFaults(), random.Random(seed))  # noqa: S311
    tasks: set[asyncio.Task[None]] = set()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        proxy.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        span = proxy.faults.cut_after
        link = _Link(proxy, proxy.rng.randint(*span) if span else None)
        link.writers = [client_w, up_w]
        pumps = [
            asyncio.create_task(link.pump(client_r, up_w)),
            asyncio.create_task(link.pump(up_r, client_w)),
        ]
        try:
            await asyncio.gather(*pumps)
        finally:
            for writer in link.writers:
                writer.close()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(track, proxy.host, 0)
    proxy.port = int(server.sockets[0].getsockname()[1])
    try:
        async with server:
            yield proxy
    finally:
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

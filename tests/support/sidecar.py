"""Starts a real in-process sidecar (gRPC server + managed OPA) for tests, with an in-memory span exporter."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.app.sidecar import Sidecar
from sidecar.config import Config
from sidecar.testing import InMemorySpans

# Below pytest-timeout's 300 s: a test that hangs prints where every task waits before it is killed
# (pytest-timeout dumps threads only, and an asyncio hang shows as a loop idling in select()).
_HANG_REPORT_AFTER_S = 240.0
_STOP_REPORT_AFTER_S = 45.0


@dataclass
class RunningSidecar:
    """A started sidecar with a connected PolicyService stub."""

    sidecar: Sidecar
    channel: grpc.aio.Channel
    stub: pb_grpc.PolicyServiceStub
    spans: InMemorySpans
    address: str


def isolated_config(config: Config, state_dir: Path, **policy_overrides: object) -> Config:
    """Return ``config`` listening on free loopback ports with its state under ``state_dir``."""
    policy = dataclasses.replace(
        config.policy,
        listen="127.0.0.1:0",
        metrics_listen="127.0.0.1:0",
        state_dir=str(state_dir),
        **policy_overrides,
    )
    bundle = dataclasses.replace(policy.bundle, output=str(state_dir / "bundle.tar.gz"))
    return dataclasses.replace(config, policy=dataclasses.replace(policy, bundle=bundle))


@contextlib.asynccontextmanager
async def running_sidecar(config: Config) -> AsyncIterator[RunningSidecar]:
    """Start a sidecar for ``config`` (use :func:`isolated_config` first) and stop it afterwards."""
    spans = InMemorySpans()
    sidecar = Sidecar(config, span_exporter=spans)
    await sidecar.start()
    assert sidecar.grpc is not None
    address = f"127.0.0.1:{sidecar.grpc.port}"
    channel = grpc.aio.insecure_channel(address)
    watchdog = asyncio.create_task(_report_hang(_HANG_REPORT_AFTER_S))
    try:
        yield RunningSidecar(sidecar, channel, pb_grpc.PolicyServiceStub(channel), spans, address)
    finally:
        watchdog.cancel()
        # A stop that hangs is reported too (its own clock: the test may have used most of its
        # time): where each task waits, before pytest-timeout kills the test at 300 s.
        stopping = asyncio.create_task(_report_hang(_STOP_REPORT_AFTER_S, "stopping"))
        try:
            await channel.close()
            await sidecar.stop()
        finally:
            stopping.cancel()


async def _report_hang(after_s: float, what: str = "running") -> None:
    """After ``after_s``, write every asyncio task's stack to stderr (captured with the test)."""
    await asyncio.sleep(after_s)
    out = io.StringIO()
    out.write(f"== still {what} after {after_s:.0f}s; asyncio tasks:\n")
    for task in asyncio.all_tasks():
        out.write(f"-- {task!r}\n")
        task.print_stack(file=out)
    sys.stderr.write(out.getvalue())

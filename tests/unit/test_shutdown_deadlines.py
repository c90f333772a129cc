"""A shutdown step that never returns is abandoned at its deadline, named, and the rest still runs."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from sidecar.app._shutdown import bounded_exit, bounded_stop
from sidecar.testing import CapturedLogs


@contextlib.asynccontextmanager
async def _stuck_on_exit(stopped: list[str]) -> AsyncIterator[str]:
    try:
        yield "value"
    finally:
        stopped.append("stuck began")
        await asyncio.Event().wait()  # never set: a listener waiting on a connection forever


async def test_a_stuck_exit_is_abandoned_and_the_steps_after_it_still_run() -> None:
    stopped: list[str] = []

    async def later_step() -> None:
        stopped.append("pool released its jobs")

    started = time.monotonic()
    with CapturedLogs(level="error") as logs:
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(bounded_stop("worker pool", later_step, 1.0))
            value = await stack.enter_async_context(
                bounded_exit("webhook server", _stuck_on_exit(stopped), 0.2)
            )
            assert value == "value"
    assert time.monotonic() - started < 5
    assert stopped == ["stuck began", "pool released its jobs"]
    (overran,) = logs.find("shutdown step overran its deadline; going on")
    assert overran["step"] == "webhook server" and overran["deadline_s"] == 0.2
    # The stacks were read while the step was still stuck: its task is among them.
    assert "__aexit__() running" in overran["tasks"], overran["tasks"]


async def test_a_stop_callback_past_its_deadline_is_logged_by_name() -> None:
    async def hangs() -> None:
        await asyncio.Event().wait()

    with CapturedLogs(level="error") as logs:
        await bounded_stop("revision trigger", hangs, 0.1)()
    (overran,) = logs.find("shutdown step overran its deadline; going on")
    assert overran["step"] == "revision trigger"


async def test_a_healthy_exit_logs_nothing_and_an_error_in_it_still_propagates() -> None:
    @contextlib.asynccontextmanager
    async def fails_on_exit() -> AsyncIterator[None]:
        yield
        raise RuntimeError("listener would not close")

    with CapturedLogs(level="error") as logs:
        async with bounded_exit("fine", contextlib.nullcontext()):
            pass
        with pytest.raises(RuntimeError, match="would not close"):
            async with bounded_exit("failing", fails_on_exit()):
                pass
    assert logs.events == []

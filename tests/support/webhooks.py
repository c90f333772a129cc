"""Webhook test support: a recording ``on_push``, a free loopback port and polling for a condition."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sidecar.model.decision import ImageRef
from tests.support.ports import free_port

__all__ = ["PushRecorder", "free_port", "wait_for"]


@dataclass
class PushRecorder:
    """An ``on_push`` that records every ImageRef it is called with."""

    calls: list[ImageRef] = field(default_factory=list)

    async def __call__(self, ref: ImageRef) -> None:
        """Record ``ref``."""
        self.calls.append(ref)


async def wait_for(check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0) -> None:
    """Poll ``check`` (plain or async) until it holds; AssertionError after ``timeout_s``."""
    end = time.monotonic() + timeout_s
    while True:
        held = check()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.05)

"""Runs bundle reads and validations in worker processes, never on the event loop's interpreter.

A worker thread is not enough: gunzipping releases the GIL, but ``json.loads`` of a 60 MB data
file holds it for half a second, and every Decide waits that long. A small pool of spawned
processes (started on first use, ``slots`` at a time) takes that work, so an admin caller's bundle
costs decisions CPU time on a shared core at most, never the event loop. Errors the work raises
on purpose (``SidecarError``) come back as themselves.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, TypeVar

from sidecar.errors import SidecarError

__all__ = ["BundleWorkers"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Raised:
    """A SidecarError raised in a worker, as plain data (custom ``__init__``s do not unpickle)."""

    module: str
    name: str
    message: str
    state: dict[str, Any]

    def rebuild(self) -> SidecarError:
        cls = getattr(importlib.import_module(self.module), self.name, None)
        if not (isinstance(cls, type) and issubclass(cls, SidecarError)):
            cls = SidecarError
        error: SidecarError = cls.__new__(cls)
        Exception.__init__(error, self.message)
        error.__dict__.update(self.state)
        error.message = self.message
        return error


def _run(work: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    """Call ``work`` in the worker; a SidecarError travels back as :class:`_Raised`."""
    try:
        return work(*args)
    except SidecarError as exc:
        cls = type(exc)
        return _Raised(cls.__module__, cls.__qualname__, exc.message, dict(exc.__dict__))


class BundleWorkers:
    """At most ``slots`` bundle jobs at once, each in a worker process (``processes=False``: threads)."""

    def __init__(self, slots: int = 2, *, processes: bool = True) -> None:
        self._slots = slots
        self._processes = processes
        self._gate = asyncio.Semaphore(slots)
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, work: Callable[..., _T], *args: Any) -> _T:
        """Return ``work(*args)`` computed in a worker; its SidecarError is raised here."""
        async with self._gate:
            if not self._processes:
                return await asyncio.to_thread(work, *args)
            loop = asyncio.get_running_loop()
            try:
                result = await loop.run_in_executor(self._ensure(), _run, work, args)
            except BrokenProcessPool:
                # A worker died (killed, out of memory): start a fresh pool and try once more.
                self._drop()
                result = await loop.run_in_executor(self._ensure(), _run, work, args)
        if isinstance(result, _Raised):
            raise result.rebuild()
        value: _T = result
        return value

    async def close(self) -> None:
        """Stop the worker processes (running jobs are abandoned)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _ensure(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # spawn: a fork of a process running gRPC and asyncio threads is not safe.
            self._pool = ProcessPoolExecutor(
                self._slots, mp_context=multiprocessing.get_context("spawn")
            )
        return self._pool

    def _drop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)

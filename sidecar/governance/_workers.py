"""Runs bundle reads and validations in worker processes, never on the event loop's interpreter.

A worker thread is not enough: gunzipping releases the GIL, but ``json.loads`` of a 60 MB data
file holds it for half a second, and every Decide waits that long. A small pool of spawned
processes (started on first use, ``slots`` at a time) takes that work, so an admin caller's bundle
costs decisions CPU time on a shared core at most, never the event loop. Errors the work raises
on purpose (``SidecarError``) come back as themselves.

Each job has a deadline: YAML is parsed by a pure-Python loader (a few MB a minute on a busy
core), so a bundle within the size limits can still take a worker for a quarter of an hour. A job
past its deadline is refused ``RESOURCE_EXHAUSTED`` naming ``timeout_key``, and the workers are
killed (the executor has no way to stop one job) and started again on the next job; other jobs
running at that moment are run once more.
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

from sidecar.errors import ResourceExhausted, SidecarError
from sidecar.telemetry import get_logger

__all__ = ["BundleWorkers"]

_T = TypeVar("_T")
_log = get_logger("sidecar.governance.workers")


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

    def __init__(
        self,
        slots: int = 2,
        *,
        processes: bool = True,
        timeout_s: float | None = None,
        timeout_key: str = "",
    ) -> None:
        self._slots = slots
        self._processes = processes
        self._timeout_s = timeout_s
        self._timeout_key = timeout_key
        self._gate = asyncio.Semaphore(slots)
        self._pool: ProcessPoolExecutor | None = None

    async def run(self, work: Callable[..., _T], *args: Any) -> _T:
        """Return ``work(*args)`` computed in a worker; its SidecarError is raised here."""
        async with self._gate:
            if not self._processes:
                return await asyncio.to_thread(work, *args)
            try:
                result = await self._submit(work, args)
            except BrokenProcessPool:
                # A worker died (killed, out of memory, or past another job's deadline): start a
                # fresh pool and try once more.
                self._drop()
                result = await self._submit(work, args)
        if isinstance(result, _Raised):
            raise result.rebuild()
        value: _T = result
        return value

    async def _submit(self, work: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        pool = self._ensure()
        future = asyncio.get_running_loop().run_in_executor(pool, _run, work, args)
        try:
            return await asyncio.wait_for(future, self._timeout_s)
        except TimeoutError:
            _log.warning(
                "bundle job past its deadline: workers killed",
                timeout_s=self._timeout_s,
                job=getattr(work, "__name__", type(work).__name__),
            )
            self._kill(pool)
            where = f" ({self._timeout_key})" if self._timeout_key else ""
            raise ResourceExhausted(
                f"bundle: reading and checking it took longer than {self._timeout_s:g} s{where}; "
                "refused",
                self._timeout_key,
            ) from None

    async def close(self) -> None:
        """Stop the worker processes (a job still running is abandoned: its worker is killed)."""
        pool = self._pool
        if pool is not None:
            self._kill(pool)

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

    def _kill(self, pool: ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        # Before 3.14 (terminate_workers) the executor has no public way to stop a running job.
        processes = dict(getattr(pool, "_processes", None) or {})
        for process in processes.values():
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

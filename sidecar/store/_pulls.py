"""Pull counts read a moment ago, reused briefly, each read once however many ask at once.

A reconcile pass enriches every tag of a repository one after another (and several at once),
and each enrichment asked the store the same question: 0.77 ms of the 0.96 ms an enrichment
cost (``tests/bench/reconcile.py``, docs/benchmarks.md). Those reads come milliseconds apart,
so a quarter of a second catches them all, while the counts (hourly buckets summed over days,
arriving through the asynchronous webhook inbox) are never staler than the inbox already makes
them. This process's own writes drop the repository's counts at once; another process's writes
(a replica, the CLI) are seen at most :data:`MAX_AGE_S` later.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

__all__ = ["MAX_AGE_S", "RecentPulls"]

#: How long read counts are reused (seconds).
MAX_AGE_S = 0.25
# Repositories remembered: a pass walks repositories in order, so only the current few matter.
_SIZE = 4096

_Key = tuple[str, float]  # (repository, window_s)
_Counts = dict[str, int]


class RecentPulls:
    """Read-through memory of pull counts per (repository, window), invalidated by writes."""

    def __init__(
        self,
        *,
        max_age_s: float = MAX_AGE_S,
        size: int = _SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Reuse counts for ``max_age_s``; remember at most ``size`` keys."""
        self._max_age_s = max_age_s
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[_Key, tuple[float, int, _Counts]] = OrderedDict()
        # A read in flight and the repository's generation when it started: a caller joins it
        # only if no write happened since, so a count written before a read began is seen.
        self._reading: dict[_Key, tuple[int, asyncio.Future[_Counts]]] = {}
        # The number of the last write per repository (bounded: webhooks name any repository).
        # A forgotten repository's last write is taken to be the newest forgotten one: wrong
        # only towards reading again.
        self._writes = 0
        self._last_write: OrderedDict[str, int] = OrderedDict()
        self._forgotten = 0

    def _generation(self, repository: str) -> int:
        return self._last_write.get(repository, self._forgotten)

    def written(self, repository: str) -> None:
        """Say pulls of ``repository`` were just written: its counts are read again."""
        self._writes += 1
        self._last_write[repository] = self._writes
        self._last_write.move_to_end(repository)
        while len(self._last_write) > self._size:
            self._forgotten = max(self._forgotten, self._last_write.popitem(last=False)[1])

    async def read(
        self, repository: str, window_s: float, load: Callable[[], Awaitable[_Counts]]
    ) -> _Counts:
        """Return the counts of ``repository`` over ``window_s``, calling ``load`` when needed."""
        key = (repository, window_s)
        generation = self._generation(repository)
        held = self._entries.get(key)
        if (
            held is not None
            and held[1] == generation  # no write since it was read
            and self._clock() - held[0] <= self._max_age_s
        ):
            return dict(held[2])
        pending = self._reading.get(key)
        if pending is None or pending[0] != generation:
            future: asyncio.Future[_Counts] = asyncio.ensure_future(
                self._load(key, generation, load)
            )
            # Consumed here too: a failed read nobody awaits any more must not warn at exit.
            future.add_done_callback(_consume)
            pending = self._reading[key] = (generation, future)
        # Shielded: one caller cancelled (its deadline) must not cancel the others' read.
        return dict(await asyncio.shield(pending[1]))

    async def _load(
        self, key: _Key, generation: int, load: Callable[[], Awaitable[_Counts]]
    ) -> _Counts:
        started = self._clock()
        try:
            counts = await load()
        finally:
            current = self._reading.get(key)
            if current is not None and current[1] is asyncio.current_task():
                del self._reading[key]
        if self._generation(key[0]) == generation:  # no write since: still current
            self._entries[key] = (started, generation, counts)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return counts


def _consume(future: asyncio.Future[_Counts]) -> None:
    with contextlib.suppress(BaseException):
        future.exception()

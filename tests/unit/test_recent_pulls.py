"""Pull counts reused for a moment (``sidecar/store/_pulls.py``): a reconcile pass asks the store
once per tag of a repository, milliseconds apart; the store is asked once, and never answers
with counts older than a write this process made."""

from __future__ import annotations

import asyncio

import pytest

from sidecar.store._pulls import RecentPulls


class _Store:
    """The database side: counts per repository, each read counted, optionally held open."""

    def __init__(self) -> None:
        self.counts: dict[str, dict[str, int]] = {}
        self.reads = 0
        self.gate: asyncio.Event | None = None

    def loader(self, repository: str) -> object:
        async def load() -> dict[str, int]:
            self.reads += 1
            snapshot = dict(self.counts.get(repository, {}))  # read when the query runs
            if self.gate is not None:
                await self.gate.wait()
            return snapshot

        return load


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def _read(cache: RecentPulls, store: _Store, repository: str) -> dict[str, int]:
    return await cache.read(repository, 3600.0, store.loader(repository))  # type: ignore[arg-type]


async def test_reads_close_together_ask_the_store_once_and_later_ones_again() -> None:
    store, clock = _Store(), _Clock()
    store.counts["team/app"] = {"eu-west-1": 5}
    cache = RecentPulls(max_age_s=0.25, clock=clock)
    assert await _read(cache, store, "team/app") == {"eu-west-1": 5}
    clock.now += 0.2
    assert await _read(cache, store, "team/app") == {"eu-west-1": 5}
    assert store.reads == 1
    clock.now += 0.1  # past the quarter second: read again
    store.counts["team/app"] = {"eu-west-1": 6}
    assert await _read(cache, store, "team/app") == {"eu-west-1": 6}
    assert store.reads == 2


async def test_a_write_of_this_process_is_seen_by_the_next_read() -> None:
    store, clock = _Store(), _Clock()
    cache = RecentPulls(clock=clock)
    assert await _read(cache, store, "team/app") == {}
    store.counts["team/app"] = {"us-east-1": 1}
    cache.written("team/app")
    assert await _read(cache, store, "team/app") == {"us-east-1": 1}
    # Another repository's write leaves this one's counts reused.
    cache.written("team/other")
    assert await _read(cache, store, "team/app") == {"us-east-1": 1}
    assert store.reads == 2


async def test_concurrent_reads_share_one_store_read() -> None:
    store = _Store()
    store.counts["team/app"] = {"eu-west-1": 2}
    store.gate = asyncio.Event()
    cache = RecentPulls()
    readers = [asyncio.ensure_future(_read(cache, store, "team/app")) for _ in range(8)]
    await asyncio.sleep(0.01)
    store.gate.set()
    assert await asyncio.gather(*readers) == [{"eu-west-1": 2}] * 8
    assert store.reads == 1


async def test_a_read_racing_a_write_is_neither_joined_nor_kept() -> None:
    store = _Store()
    store.gate = asyncio.Event()
    cache = RecentPulls()
    early = asyncio.ensure_future(_read(cache, store, "team/app"))  # reads the old counts
    await asyncio.sleep(0.01)
    store.counts["team/app"] = {"eu-west-1": 9}
    cache.written("team/app")
    late = asyncio.ensure_future(_read(cache, store, "team/app"))  # must not join the early one
    await asyncio.sleep(0.01)
    store.gate.set()
    assert await early == {}
    assert await late == {"eu-west-1": 9}
    store.gate = None
    assert await _read(cache, store, "team/app") == {"eu-west-1": 9}  # the old one was not kept
    assert store.reads == 2


async def test_a_cancelled_reader_leaves_the_others_their_answer() -> None:
    store = _Store()
    store.counts["team/app"] = {"eu-west-1": 3}
    store.gate = asyncio.Event()
    cache = RecentPulls()
    first = asyncio.ensure_future(_read(cache, store, "team/app"))
    second = asyncio.ensure_future(_read(cache, store, "team/app"))
    await asyncio.sleep(0.01)
    first.cancel()  # its deadline passed
    store.gate.set()
    assert await second == {"eu-west-1": 3}
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_failed_read_reaches_every_waiter_and_is_not_kept() -> None:
    cache = RecentPulls()
    calls = 0

    async def broken() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise ConnectionError("database gone")

    results = await asyncio.gather(
        *(cache.read("team/app", 3600.0, broken) for _ in range(3)), return_exceptions=True
    )
    assert [type(r) for r in results] == [ConnectionError] * 3
    with pytest.raises(ConnectionError):
        await cache.read("team/app", 3600.0, broken)
    assert calls == 2


async def test_the_memory_is_bounded_however_many_repositories_are_named() -> None:
    store, clock = _Store(), _Clock()
    cache = RecentPulls(size=4, clock=clock)
    for n in range(50):
        cache.written(f"hostile/{n}")
        await _read(cache, store, f"hostile/{n}")
    assert len(cache._entries) <= 4 and len(cache._last_write) <= 4
    # A repository whose write record was forgotten is read again, never answered stale.
    store.counts["hostile/0"] = {"eu-west-1": 1}
    cache.written("hostile/0")
    assert await _read(cache, store, "hostile/0") == {"eu-west-1": 1}

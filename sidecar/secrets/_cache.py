"""Fetched secrets, kept for a TTL and shared by every client of the process.

One read at a time per secret (callers wait for it), in a worker thread with a deadline. A failed
read is remembered briefly, so a flood of requests for a registry whose secret is missing does
not become a flood of calls to the secret manager. A registry's 401 drops a cached value (once
it has been held a moment): the next read fetches the rotated one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sidecar.config import SecretRef
from sidecar.secrets._readers import ReadFailed, SecretReader
from sidecar.telemetry import get_logger

__all__ = ["FAILURE_TTL_S", "MIN_REFRESH_S", "SecretCache"]

_log = get_logger("sidecar.secrets")

FAILURE_TTL_S = 5.0  # how long a failed read answers for the secret before it is tried again
MIN_REFRESH_S = 1.0  # a value fetched less than this long ago is not dropped on a 401


@dataclass(slots=True)
class _Entry:
    value: bytes | None = field(default=None, repr=False)
    failure: ReadFailed | None = None
    at: float = 0.0  # when it was read
    until: float = 0.0  # when it must be read again
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class SecretCache:
    """Secrets by reference, read through the manager's reader, each kept ``ttl_s`` seconds."""

    def __init__(
        self,
        readers: Mapping[str, SecretReader],
        *,
        ttl_s: float,
        timeout_s: float,
        failure_ttl_s: float = FAILURE_TTL_S,
        min_refresh_s: float = MIN_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read with ``readers[ref.manager]``; a read taking over ``timeout_s`` fails (transient)."""
        self._readers = readers
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._failure_ttl_s = failure_ttl_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._entries: dict[SecretRef, _Entry] = {}
        self.reads = 0  # reads sent to a manager (tests and benchmarks count them)

    def _fresh(self, entry: _Entry) -> bool:
        return (
            entry.value is not None or entry.failure is not None
        ) and self._clock() < entry.until

    async def read(self, ref: SecretRef) -> bytes:
        """Return the secret's value, reading it when not cached; ReadFailed when unusable."""
        entry = self._entries.setdefault(ref, _Entry())
        if not self._fresh(entry):
            async with entry.lock:
                if not self._fresh(entry):
                    await self._fetch(ref, entry)
        if entry.value is None:
            raise entry.failure or ReadFailed("cannot be read")
        return entry.value

    async def _fetch(self, ref: SecretRef, entry: _Entry) -> None:
        reader = self._readers[ref.manager]
        self.reads += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                # The SDKs block: the read runs in a thread (left to finish if the deadline hits).
                value = await asyncio.to_thread(reader.read, ref)
        except ReadFailed as exc:
            entry.value, entry.failure = None, exc
        except TimeoutError:
            entry.value = None
            entry.failure = ReadFailed(
                f"no answer from the secret manager within {self._timeout_s:g} s", transient=True
            )
        except Exception as exc:  # an SDK bug must fail this registry, not the caller's task
            entry.value = None
            entry.failure = ReadFailed(f"cannot be read ({type(exc).__name__})")
        else:
            entry.value, entry.failure = value, None
            _log.info("registry_secret_read", secret=ref.label, ttl_s=self._ttl_s)
        entry.at = self._clock()
        entry.until = entry.at + (self._ttl_s if entry.failure is None else self._failure_ttl_s)
        if entry.failure is not None:
            _log.warning(
                "registry_secret_unusable", secret=ref.label, problem=entry.failure.problem
            )

    def distrust(self, ref: SecretRef, value: bytes) -> None:
        """``value`` cannot be used (malformed): read it again as soon as a failed read would be.

        Kept until then (another registry may find its entry in it), so a secret the operator
        fixes is picked up within ``failure_ttl_s``, not at the end of the TTL.
        """
        entry = self._entries.get(ref)
        if entry is not None and entry.value == value:
            entry.until = min(entry.until, entry.at + self._failure_ttl_s)

    def forget(self, ref: SecretRef, value: bytes) -> bool:
        """A registry refused credentials read from ``value``: drop it so the next read fetches.

        True when the next read can differ: the cache already holds another value, or ``value``
        was dropped; False when it was fetched less than ``min_refresh_s`` ago (no point asking
        again at once, and a registry refusing in a loop must not become a loop of reads).
        """
        entry = self._entries.get(ref)
        if entry is None or entry.value is None:
            return True
        if entry.value != value:
            return True
        if self._clock() - entry.at < self._min_refresh_s:
            return False
        entry.value, entry.until = None, 0.0
        return True

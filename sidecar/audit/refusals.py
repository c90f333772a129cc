"""Audits refused calls without letting a flood of them write a flood of fsync'd rows.

Every refusal (unauthenticated, denied, rate limited) is an audit event. Per caller key (the
authenticated identity, or the peer-address bucket of a caller that could not authenticate) the
first ``per_window`` refusals of each window are written one by one, exactly as before; the
rest are counted and written as ONE ``suppressed`` row when the window ends, saying how many
refusals of which action and outcome it stands for, between which times, and a few of the actors
they claimed to be. ``max_rows_per_window`` caps the individual rows of all keys together, so a
flood from many addresses is bounded too. Summary rows are ordinary appends: the hash chain is
exactly as valid as without aggregation, and ``audit verify`` checks it the same way.

Memory is bounded: at most ``max_keys`` keys are tracked; the least recently refused one is
summarised (if it has anything pending) and forgotten when another arrives.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sidecar.audit.record import AuditEvent, AuditRecord
from sidecar.audit.trail import AuditTrail
from sidecar.tasks import cancel_and_wait
from sidecar.telemetry import get_logger

__all__ = ["REFUSAL_OUTCOMES", "RefusalAudit", "RefusalWindow"]

REFUSAL_OUTCOMES = ("unauthenticated", "denied", "rate_limited")
_SAMPLE_ACTORS = 5
_DEFAULT_KEYS = 4096
_OVERFLOW = "*"  # the key refusals are counted under once the all-keys row budget is spent

_log = get_logger("sidecar.audit.refusals")


@dataclass(frozen=True, slots=True)
class RefusalWindow:
    """How refusals are aggregated: ``per_window`` rows per key every ``window_s`` seconds."""

    per_window: int = 20
    window_s: float = 60.0
    max_rows_per_window: int = 200
    max_keys: int = _DEFAULT_KEYS


@dataclass(slots=True)
class _Pending:
    """One key's current window: rows written, refusals held back and what they were."""

    started: float
    written: int = 0
    suppressed: int = 0
    first_at: str = ""
    last_at: str = ""
    kinds: Counter[tuple[str, str]] = field(default_factory=Counter)
    actors: list[str] = field(default_factory=list)


class RefusalAudit:
    """Writes refusals to an :class:`AuditTrail`, summarising those over the window's budget."""

    def __init__(
        self,
        trail: AuditTrail,
        window: RefusalWindow,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trail = trail
        self._window = window
        self._clock = clock
        self._keys: OrderedDict[str, _Pending] = OrderedDict()
        self._all_started = clock()
        self._all_written = 0
        self._flusher: asyncio.Task[None] | None = None

    async def refused(self, key: str, event: AuditEvent) -> AuditRecord | None:
        """Audit a refusal of ``key``'s call: its own row, or (over the budget) a later summary."""
        now = self._clock()
        window = self._window
        if now - self._all_started >= window.window_s:
            self._all_started, self._all_written = now, 0
        pending = self._keys.pop(key, None)
        if pending is not None and now - pending.started >= window.window_s:
            await self._summarise(key, pending)
            pending = None
        if pending is None:
            pending = _Pending(now)
        self._keys[key] = pending
        await self._evict()
        if pending.written < window.per_window and self._all_written < window.max_rows_per_window:
            pending.written += 1
            self._all_written += 1
            return await self._trail.record(event)
        if pending.written < window.per_window:
            # The all-keys budget is spent: count it under one shared key, whatever its own.
            key, pending = _OVERFLOW, self._keys.pop(_OVERFLOW, None) or _Pending(now)
            self._keys[key] = pending
        self._hold(pending, event)
        self._schedule()
        return None

    async def flush(self) -> None:
        """Write the summary of every key with held-back refusals now (e.g. at shutdown)."""
        for key in list(self._keys):
            pending = self._keys[key]
            if pending.suppressed:
                await self._summarise(key, pending)
                pending.suppressed = 0
                pending.kinds.clear()
                pending.actors.clear()

    async def close(self) -> None:
        """Stop the window timer and write what is still held back."""
        if self._flusher is not None:
            await cancel_and_wait(self._flusher)
            self._flusher = None
        await self.flush()

    def _hold(self, pending: _Pending, event: AuditEvent) -> None:
        at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        pending.suppressed += 1
        pending.first_at = pending.first_at or at
        pending.last_at = at
        pending.kinds[(event.action, event.outcome)] += 1
        if event.actor not in pending.actors and len(pending.actors) < _SAMPLE_ACTORS:
            pending.actors.append(event.actor)

    def _schedule(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_due())

    async def _flush_due(self) -> None:
        """Write each held-back window's summary when it ends; stop when nothing is held."""
        while True:
            held = [(p.started, k) for k, p in self._keys.items() if p.suppressed]
            if not held:
                return
            started, _ = min(held)
            await asyncio.sleep(max(0.0, started + self._window.window_s - self._clock()))
            now = self._clock()
            for key, pending in list(self._keys.items()):
                if pending.suppressed and now - pending.started >= self._window.window_s:
                    del self._keys[key]
                    try:
                        await self._summarise(key, pending)
                    except Exception as exc:  # a failed write must not end the timer
                        _log.error("refusal summary not written", key=key, error=f"{exc!r}")

    async def _evict(self) -> None:
        while len(self._keys) > self._window.max_keys:
            key, pending = self._keys.popitem(last=False)
            if pending.suppressed:
                await self._summarise(key, pending)

    async def _summarise(self, key: str, pending: _Pending) -> None:
        if not pending.suppressed:
            return
        actions = sorted({action for action, _ in pending.kinds})
        kinds = ", ".join(
            f"{count} {action} {outcome}"
            for (action, outcome), count in sorted(pending.kinds.items())
        )
        who = "callers over the all-keys row budget" if key == _OVERFLOW else key
        detail = (
            f"{pending.suppressed} more refused calls by {who} between {pending.first_at} and "
            f"{pending.last_at}, not written one by one (over {self._window.per_window} per "
            f"{self._window.window_s:g} s; policy.admin.audit_refusals): {kinds}; "
            f"claimed actors include {', '.join(pending.actors)}"
        )
        await self._trail.record(
            AuditEvent(
                key,
                actions[0] if len(actions) == 1 else "several",
                "suppressed",
                detail=detail,
            )
        )

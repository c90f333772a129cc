"""The registry prober: probes every registry each interval and keeps its health with hysteresis.

Each round probes all registries at once (``GET /v2/`` with the registry's auth, bounded by the
probe timeout), feeds every outcome to that registry's :class:`HealthBreaker`, and applies the
transitions: the ``registry_healthy`` gauge, a structured log event, the remembered state in
the job store (so a restart during an outage starts failed over), then the listeners (recovery).

A registry that turns healthy is *held* (:meth:`HealthMonitor.blocked`) until the listener that
recovers it calls :meth:`release`: the worker pool claims none of its jobs before the parked
and deferred work is back in the queue, so that work runs in priority order, not arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from sidecar.config import HealthSettings
from sidecar.errors import ErrorCode, RegistryError, SecretUnusable, SidecarError
from sidecar.health.breaker import HealthBreaker, HealthState, Transition
from sidecar.health.metrics import HealthMetrics
from sidecar.telemetry import get_logger
from sidecar.typing import HealthLedger

__all__ = ["HealthMonitor", "Listener", "PingFn", "ProbeResult"]

_log = get_logger("sidecar.health")

PingFn = Callable[[str], Awaitable[object]]
"""Probe registry ``name`` once; return anything on success, raise on failure."""

Listener = Callable[[Sequence[Transition]], Awaitable[None]]
"""Called (as a task) with the transitions of one probe round."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: whether it passed, how long it took and, when it failed, why."""

    registry: str
    ok: bool
    latency_s: float
    outcome: str  # "ok" or an ErrorCode value / "timeout"
    error: str = ""
    # The failure needs no first contact to mean "down" (the registry's secret is unusable).
    conclusive: bool = False


class HealthMonitor:
    """Probes registries and answers which are healthy (for decisions) and blocked (for workers)."""

    def __init__(
        self,
        registries: Sequence[str],
        ping: PingFn,
        settings: HealthSettings,
        *,
        ledger: HealthLedger | None = None,
        metrics_registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare one breaker per registry; nothing is probed until :meth:`start`."""
        self.settings = settings
        self._ping, self._ledger, self._clock = ping, ledger, clock
        self._breakers = {name: self._breaker(name, HealthState.UNKNOWN) for name in registries}
        self._last: dict[str, ProbeResult] = {}
        self._metrics = HealthMetrics(metrics_registry or CollectorRegistry())
        for name in registries:
            self._metrics.healthy.labels(name).set(1)
        self._listeners: list[Listener] = []
        self._held: set[str] = set()
        self._round_lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._changed = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def _breaker(self, name: str, state: HealthState) -> HealthBreaker:
        s = self.settings
        return HealthBreaker(
            name,
            failure_threshold=s.failure_threshold,
            success_threshold=s.success_threshold,
            min_dwell_s=s.min_dwell_s,
            state=state,
            clock=self._clock,
        )

    @property
    def metrics(self) -> HealthMetrics:
        """The health metric families (recovery counts into them too)."""
        return self._metrics

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` with every round's transitions; it must :meth:`release` recoveries."""
        self._listeners.append(listener)

    async def start(self) -> None:
        """Restore remembered states, then probe every ``interval_s`` in the background."""
        if self._ledger is not None:
            try:
                remembered = await self._ledger.health_states()
            except Exception:
                _log.exception("registry_health_restore_failed")
                remembered = {}
            for name, healthy in remembered.items():
                if name in self._breakers:
                    state = HealthState.HEALTHY if healthy else HealthState.UNHEALTHY
                    self._breakers[name] = self._breaker(name, state)
                    self._metrics.healthy.labels(name).set(int(healthy))
            down = sorted(n for n, h in remembered.items() if not h and n in self._breakers)
            if down:
                _log.warning("registry_health_restored", unhealthy=down)
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="registry-prober")

    async def stop(self) -> None:
        """Stop probing and cancel listener tasks still running; idempotent."""
        task, self._loop_task = self._loop_task, None
        pending = [t for t in (task, *self._tasks) if t is not None]
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    def probe_now(self) -> None:
        """Start the next round at once instead of at the end of the interval."""
        self._kick.set()

    def state(self, registry: str) -> HealthState:
        """The probed state of ``registry`` (unknown for names that are not probed)."""
        breaker = self._breakers.get(registry)
        return breaker.state if breaker is not None else HealthState.UNKNOWN

    def healthy(self, registry: str) -> bool:
        """Whether decisions may treat ``registry`` as healthy (unknown counts as healthy)."""
        return self.state(registry) is not HealthState.UNHEALTHY

    def blocked(self) -> frozenset[str]:
        """Registries whose jobs the worker pool must not claim now: recovering ones."""
        return frozenset(self._held)

    def release(self, registries: Collection[str]) -> None:
        """End the hold of recovered ``registries`` (their recovery has queued its work)."""
        self._held.difference_update(registries)

    def last_probe(self, registry: str) -> ProbeResult | None:
        """The latest probe of ``registry``, if any."""
        return self._last.get(registry)

    def states(self) -> Mapping[str, HealthState]:
        """Every probed registry's state."""
        return {name: b.state for name, b in self._breakers.items()}

    async def wait_for(self, registry: str, state: HealthState, timeout_s: float) -> None:
        """Return once ``registry`` is in ``state``; raise TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self.state(registry) is not state:
                await self._changed.wait()

    async def idle(self) -> None:
        """Wait until every listener task started so far (and any it chained) has finished."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            self._kick.clear()
            try:
                await self.probe_round()
            except Exception:
                _log.exception("registry_probe_round_failed")
            delay = max(0.0, self.settings.interval_s - (loop.time() - started))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), timeout=delay)

    async def probe_round(self) -> list[Transition]:
        """Probe every registry once, apply and return the transitions (rounds never overlap)."""
        async with self._round_lock:
            results = await asyncio.gather(*(self._probe(name) for name in self._breakers))
            transitions: list[Transition] = []
            for result in results:
                self._last[result.registry] = result
                self._metrics.probe_seconds.labels(result.registry, result.outcome).observe(
                    result.latency_s
                )
                change = self._breakers[result.registry].record(
                    result.ok, result.error, conclusive=result.conclusive
                )
                if change is not None:
                    transitions.append(change)
            if transitions:
                await self._apply(transitions)
            return transitions

    async def _probe(self, name: str) -> ProbeResult:
        timeout = self.settings.timeout_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                await self._ping(name)
        except TimeoutError:
            return self._failed(name, started, "timeout", f"no answer within {timeout:g} s")
        except RegistryError as exc:
            if exc.status == 429:
                # Throttling proves the registry is up; the copies honour its Retry-After.
                return ProbeResult(name, True, time.perf_counter() - started, "ok")
            # An unusable secret is not the registry's fault, but nothing can be sent to it:
            # down, with the reason, without waiting for a first contact that cannot happen.
            conclusive = isinstance(exc, SecretUnusable) and not exc.transient
            latency = time.perf_counter() - started
            return ProbeResult(name, False, latency, exc.code.value, exc.message, conclusive)
        except SidecarError as exc:
            return self._failed(name, started, exc.code.value, exc.message)
        except Exception as exc:  # a probe must never kill the round
            return self._failed(
                name, started, ErrorCode.INTERNAL.value, f"{type(exc).__name__}: {exc}"
            )
        return ProbeResult(name, True, time.perf_counter() - started, "ok")

    @staticmethod
    def _failed(name: str, started: float, outcome: str, error: str) -> ProbeResult:
        return ProbeResult(name, False, time.perf_counter() - started, outcome, error)

    async def _apply(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            healthy = t.state is not HealthState.UNHEALTHY
            self._metrics.healthy.labels(t.registry).set(int(healthy))
            self._metrics.transitions.labels(t.registry, t.state.value).inc()
            if t.state is HealthState.HEALTHY and self._listeners:
                # Held before anything awaits, so no worker can claim its jobs ahead of recovery.
                self._held.add(t.registry)
            last = self._last.get(t.registry)
            log = _log.warning if t.state is HealthState.UNHEALTHY else _log.info
            log(
                "registry_health_changed",
                registry=t.registry,
                previous=t.previous.value,
                state=t.state.value,
                healthy=healthy,
                consecutive=t.consecutive,
                error=t.error or None,
                latency_ms=round(last.latency_s * 1000, 3) if last else None,
            )
        if self._ledger is not None:
            for t in transitions:
                try:
                    await self._ledger.record_health(t.registry, t.state is HealthState.HEALTHY)
                except Exception:
                    _log.exception("registry_health_not_recorded", registry=t.registry)
        for listener in self._listeners:
            task = asyncio.create_task(_guarded(listener, tuple(transitions)), name="recovery")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        # Waiters wake after the listeners exist, so idle() right after wait_for() sees them.
        self._changed.set()
        self._changed = asyncio.Event()


async def _guarded(listener: Listener, transitions: Sequence[Transition]) -> None:
    try:
        await listener(transitions)
    except Exception:
        # The listener's own bookkeeping failed; the periodic sweep will catch up.
        _log.exception(
            "registry_health_listener_failed", registries=[t.registry for t in transitions]
        )

"""Retries of an unavailable OPA: the backoff schedule, the deadline, what is never retried.

The wrapped engine is a scripted stand-in for the PolicyEngine seam (sidecar/typing.py): what is
under test is ResilientEngine's schedule, which a real OPA cannot make deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import load_config
from sidecar.errors import ConfigError, PolicyError, PolicyUnavailable
from sidecar.model.decision import EngineAnswer
from sidecar.policy.breaker import BreakerState, CircuitBreaker, CircuitOpen
from sidecar.policy.resilient import ResilientEngine, RetryPolicy, resilient_engine

ANSWER = EngineAnswer(result={"allow": True}, bundle_revision="r1")


class ScriptedEngine:
    """Raises or answers from a script, one entry per call."""

    def __init__(self, *script: Exception | EngineAnswer) -> None:
        self.script = list(script)
        self.calls = 0

    async def evaluate(self, policy_input: Mapping[str, Any]) -> EngineAnswer:
        self.calls += 1
        step = self.script.pop(0) if self.script else PolicyUnavailable("down")
        if isinstance(step, Exception):
            raise step
        return step

    async def close(self) -> None:
        return None


class FakeTime:
    """A clock that only moves when the engine sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _engine(
    inner: ScriptedEngine,
    time: FakeTime,
    retry: RetryPolicy,
    *,
    draw: float = 1.0,
    threshold: int = 100,
) -> ResilientEngine:
    breaker = CircuitBreaker(failure_threshold=threshold, cooldown_s=1.0, clock=time.clock)
    return ResilientEngine(
        inner, retry=retry, breaker=breaker, sleep=time.sleep, rand=lambda: draw, clock=time.clock
    )


async def test_backoff_doubles_up_to_the_cap_with_full_jitter() -> None:
    time = FakeTime()
    inner = ScriptedEngine()
    retry = RetryPolicy(attempts=5, base_s=0.1, max_s=0.3, deadline_s=60)
    with pytest.raises(PolicyUnavailable, match=r"gave up after 5 attempt"):
        await _engine(inner, time, retry, draw=0.5).evaluate({})
    assert inner.calls == 5
    assert time.sleeps == pytest.approx([0.05, 0.1, 0.15, 0.15])


async def test_recovers_when_opa_answers_on_a_retry() -> None:
    time = FakeTime()
    inner = ScriptedEngine(PolicyUnavailable("restarting"), ANSWER)
    engine = _engine(inner, time, RetryPolicy(attempts=3, base_s=0.1, max_s=1, deadline_s=5))
    assert await engine.evaluate({}) == ANSWER
    assert time.sleeps == [pytest.approx(0.1)]
    assert engine.breaker.failures == 0


async def test_never_sleeps_past_the_deadline() -> None:
    time = FakeTime()
    inner = ScriptedEngine()
    retry = RetryPolicy(attempts=10, base_s=0.4, max_s=10, deadline_s=1.0)
    with pytest.raises(PolicyUnavailable):
        await _engine(inner, time, retry).evaluate({})
    # 0.4 then 0.8 would end at 1.2 s > 1.0 s: it answers after the second attempt instead.
    assert time.sleeps == [pytest.approx(0.4)]
    assert time.now < 1.0


async def test_a_policy_error_is_raised_at_once_and_keeps_the_breaker_closed() -> None:
    time = FakeTime()
    inner = ScriptedEngine(PolicyError("eval_conflict_error"))
    engine = _engine(inner, time, RetryPolicy(attempts=3), threshold=1)
    with pytest.raises(PolicyError):
        await engine.evaluate({})
    assert inner.calls == 1 and time.sleeps == []
    assert engine.breaker.state is BreakerState.CLOSED


async def test_an_open_breaker_fails_fast_without_asking_opa() -> None:
    time = FakeTime()
    inner = ScriptedEngine()
    engine = _engine(inner, time, RetryPolicy(attempts=3, base_s=0.01, max_s=0.01), threshold=2)
    with pytest.raises(PolicyUnavailable):
        await engine.evaluate({})
    assert inner.calls == 2  # the breaker opened after two failures and stopped the third
    with pytest.raises(CircuitOpen):
        await engine.evaluate({})
    assert inner.calls == 2


def test_retry_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError, match="base_s"):
        RetryPolicy(base_s=1.0, max_s=0.5)


def test_policy_opa_settings_configure_retries_and_breaker(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "policy:\n"
        "  fail_mode: last-known\n"
        "  last_known_entries: 7\n"
        "  opa: {deadline_ms: 900, attempts: 4, backoff_base_ms: 10, backoff_max_ms: 80,\n"
        "        breaker_threshold: 2, breaker_cooldown_s: 0.5}\n"
    )
    config = load_config(path)
    engine = resilient_engine(ScriptedEngine(), config.policy.opa)
    assert engine.retry == RetryPolicy(attempts=4, base_s=0.01, max_s=0.08, deadline_s=0.9)
    assert (engine.breaker.failure_threshold, engine.breaker.cooldown_s) == (2, 0.5)
    assert config.policy.last_known_entries == 7
    defaults = load_config(None).policy
    assert (defaults.fail_mode, defaults.opa.deadline_ms, defaults.opa.attempts) == (
        "closed",
        2000,
        3,
    )


def test_a_backoff_cap_below_its_base_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("policy:\n  opa: {backoff_base_ms: 100, backoff_max_ms: 50}\n")
    with pytest.raises(ConfigError, match=r"policy\.opa\.backoff_max_ms"):
        load_config(path)

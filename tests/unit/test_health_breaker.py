"""The registry health breaker: first contact, thresholds, minimum dwell, flapping."""

from __future__ import annotations

import pytest

from sidecar.health import HealthBreaker, HealthState


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **options: object) -> HealthBreaker:
    settings: dict[str, object] = {
        "failure_threshold": 3,
        "success_threshold": 2,
        "min_dwell_s": 30.0,
        "clock": clock,
    }
    return HealthBreaker("prod-us", **(settings | options))  # type: ignore[arg-type]


def feed(b: HealthBreaker, outcomes: str) -> list[tuple[str, str]]:
    """Record ``outcomes`` ("+" success, "-" failure); return the transitions as (from, to)."""
    changes = []
    for outcome in outcomes:
        change = b.record(outcome == "+", "connection refused")
        if change is not None:
            changes.append((change.previous.value, change.state.value))
    return changes


def test_a_registry_never_reached_stays_unknown_and_first_contact_makes_it_healthy() -> None:
    b = breaker(Clock())
    assert feed(b, "-----") == []
    assert b.state is HealthState.UNKNOWN
    assert feed(b, "+") == [("unknown", "healthy")]


def test_consecutive_failures_open_and_consecutive_successes_close() -> None:
    clock = Clock()
    b = breaker(clock, state=HealthState.HEALTHY)
    assert feed(b, "--") == []
    [(old, new)] = feed(b, "-")
    assert (old, new) == ("healthy", "unhealthy") and b.consecutive_failures == 3
    clock.now += 31
    assert feed(b, "+") == []
    assert feed(b, "+") == [("unhealthy", "healthy")]


def test_the_transition_names_its_streak_and_the_last_error() -> None:
    b = breaker(Clock(), state=HealthState.HEALTHY, failure_threshold=2)
    b.record(False, "timeout")
    change = b.record(False, "connection refused")
    assert change is not None
    assert (change.consecutive, change.error, change.recovered) == (2, "connection refused", False)


def test_a_flapping_registry_never_reaches_a_threshold() -> None:
    b = breaker(Clock(), state=HealthState.HEALTHY)
    assert feed(b, "-+-+--+--+-+--+") == []
    assert b.state is HealthState.HEALTHY


def test_no_flip_before_the_dwell_is_over_then_the_held_streak_flips() -> None:
    clock = Clock()
    b = breaker(clock, state=HealthState.HEALTHY, failure_threshold=1, success_threshold=1)
    assert feed(b, "-") == [("healthy", "unhealthy")]
    clock.now += 10
    assert feed(b, "++++") == []  # back up at once, but within 30 s of the last flip
    clock.now += 25
    assert feed(b, "+") == [("unhealthy", "healthy")]
    recovered = b.record(False)
    assert recovered is None  # dwell again after the flip


def test_a_remembered_state_is_old_enough_to_flip_at_once() -> None:
    b = breaker(Clock(), state=HealthState.UNHEALTHY, success_threshold=2)
    assert feed(b, "++") == [("unhealthy", "healthy")]


def test_first_contact_starts_no_dwell() -> None:
    b = breaker(Clock(), failure_threshold=2)
    assert feed(b, "+--") == [("unknown", "healthy"), ("healthy", "unhealthy")]


@pytest.mark.parametrize(
    "options",
    [{"failure_threshold": 0}, {"success_threshold": 0}, {"min_dwell_s": -1.0}],
)
def test_nonsense_settings_are_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message names the setting
        breaker(Clock(), **options)


def test_unusable_credentials_take_a_never_reached_registry_down() -> None:
    # Its secret is missing: no first contact can ever happen, so waiting for one would keep the
    # registry "unknown" (counted healthy) forever while every job to it fails.
    b = breaker(Clock())
    changes = []
    for _ in range(3):
        change = b.record(False, "registry x: auth: secret 's': not found", conclusive=True)
        if change is not None:
            changes.append((change.previous.value, change.state.value, change.error))
    assert changes == [("unknown", "unhealthy", "registry x: auth: secret 's': not found")]
    assert feed(b, "++") == [("unhealthy", "healthy")]  # the secret fixed: back once it works

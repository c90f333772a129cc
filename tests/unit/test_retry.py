"""Retry policy: backoff with full jitter, Retry-After as a floor, and what is retried at all."""

from __future__ import annotations

import random

import pytest

from sidecar.errors import DigestMismatch, NotFound, RegistryError, RegistryUnavailable
from sidecar.replicate.retry import RetryPolicy


def test_backoff_grows_exponentially_up_to_the_cap_without_jitter() -> None:
    policy = RetryPolicy(base_s=0.5, max_s=3.0, jitter="none")
    assert [policy.delay(a) for a in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_full_jitter_stays_within_the_window_and_is_reproducible() -> None:
    first = RetryPolicy(base_s=1.0, max_s=8.0, rng=random.Random(7))  # noqa: S311 (jitter, not crypto)
    second = RetryPolicy(base_s=1.0, max_s=8.0, rng=random.Random(7))  # noqa: S311 (jitter, not crypto)
    delays = [first.delay(a) for a in range(1, 8)]
    assert delays == [second.delay(a) for a in range(1, 8)]
    windows = [min(8.0, 2.0 ** (a - 1)) for a in range(1, 8)]
    assert all(0.0 <= d <= w for d, w in zip(delays, windows, strict=True))
    assert len(set(delays)) == len(delays)  # actually jittered, not the window itself


def test_retry_after_is_a_floor_never_a_ceiling() -> None:
    policy = RetryPolicy(base_s=0.5, max_s=60.0, jitter="none")
    assert policy.delay(1, retry_after=10.0) == 10.0
    assert policy.delay(5, retry_after=1.0) == 8.0
    assert RetryPolicy(max_s=1.0, jitter="none").delay(3, retry_after=120.0) == 120.0


@pytest.mark.parametrize(
    ("exc", "early", "exhausted"),
    [
        # A registry that keeps throttling or is overloaded parks the job: it must not be lost.
        (RegistryError("503", status=503, transient=True), "retry", "park"),
        (RegistryError("429", status=429, transient=True, retry_after=3), "retry", "park"),
        (RegistryError("500", status=500, transient=True), "retry", "fail"),
        (RegistryUnavailable("connection refused"), "retry", "park"),
        (RegistryError("denied", status=403), "fail", "fail"),
        (RegistryError("no such manifest", status=404), "fail", "fail"),
        (DigestMismatch("sha256 differs", status=200, transient=True), "fail", "fail"),
        (NotFound("job"), "fail", "fail"),
        (ValueError("bug"), "fail", "fail"),
    ],
)
def test_classification(exc: Exception, early: str, exhausted: str) -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.classify(exc, 1) == early
    assert policy.classify(exc, 2) == early
    assert policy.classify(exc, 3) == exhausted

"""The per-registry token bucket, driven by a fake clock (no real sleeping)."""

from __future__ import annotations

import pytest

from sidecar.oci.ratelimit import TokenBucket


class FakeClock:
    """A monotonic clock the test advances; ``sleep`` advances it too and records the delay."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_burst_goes_at_once_then_requests_are_spaced_by_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(4.0, burst=3, clock=clock, sleep=clock.sleep)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [bucket.reserve() for _ in range(3)] == pytest.approx([0.25, 0.5, 0.75])


def test_idle_time_refills_but_never_beyond_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, burst=2, clock=clock, sleep=clock.sleep)
    bucket.reserve()
    bucket.reserve()
    clock.now += 0.5
    assert bucket.available == pytest.approx(1.0)
    clock.now += 3600
    assert bucket.available == pytest.approx(2.0)


async def test_acquire_waits_only_when_the_bucket_is_empty() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=1, clock=clock, sleep=clock.sleep)
    waits = [await bucket.acquire() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.1, 0.1, 0.1])
    assert clock.slept == pytest.approx([0.1, 0.1, 0.1])
    # 4 requests in 0.3 s of (fake) time: 1 burst + 10/s.
    assert clock.now - 100.0 == pytest.approx(0.3)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_nonsense_limits_are_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="must be"):
        TokenBucket(rate, burst)

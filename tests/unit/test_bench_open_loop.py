"""The open-loop generator keeps its arrival schedule and counts latency from each arrival."""

from __future__ import annotations

import asyncio

from sidecar.cli.bench import _open_loop


async def test_a_stalled_server_shows_as_latency_not_as_a_slower_client() -> None:
    # The first call holds everything up for 0.3 s (a server stall). A closed loop would just
    # send fewer requests; the open loop keeps arriving, so the calls scheduled during the stall
    # wait on it and their latency (from arrival) shows it.
    gate = asyncio.Event()

    async def call(i: int) -> None:
        if i == 0:
            await asyncio.sleep(0.3)
            gate.set()
        await gate.wait()

    report = await _open_loop(call, rate=100, total=20)
    assert report["errors"] == 0 and report["requests"] == 20
    assert report["peak_in_flight"] >= 15  # arrivals did not wait for answers
    assert report["p50_ms"] >= 150  # the median call arrived mid-stall and waited for its end
    assert report["p99_ms"] >= 290

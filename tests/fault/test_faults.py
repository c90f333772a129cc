"""Fault injection (issue 5 item 6), quick size: real processes on loopback, one fault at a time.

For each fault: no request past its deadline, no job lost or duplicated, and what the
registries hold equals what OPA routes once the fault is over. ``python -m tests.fault.storm``
runs the same classes big and prints the figures table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.figures import FaultFigures, markdown
from tests.fault.storm import run_fault

pytestmark = pytest.mark.timeout(300)


def assert_kept_promises(row: FaultFigures) -> None:
    """Every job of the intent succeeded once; nothing stray, half-written or late."""
    table = markdown([row])
    assert row.violations == (), table
    assert row.jobs_expected > 0, table
    assert (row.completed, row.duplicated, row.lost) == (row.jobs_expected, 0, 0), table
    assert (row.misplaced, row.incomplete, row.over_deadline) == (0, 0, 0), table


async def test_opa_frozen_then_killed_degrades_decisions_and_loses_no_push(
    tmp_path: Path,
) -> None:
    row = await run_fault("opa", tmp_path)
    assert_kept_promises(row)
    # Decisions kept answering while OPA was gone — from the fail mode — and OPA came back.
    assert row.degraded > 0 and row.served > 0 and row.failed == 0, markdown([row])
    assert row.recover_s is not None


async def test_stopped_registry_parks_its_work_and_catches_up_when_started(
    tmp_path: Path,
) -> None:
    row = await run_fault("registry", tmp_path)
    assert_kept_promises(row)
    assert row.failed == 0 and row.recover_s is not None, markdown([row])


async def test_429_with_retry_after_and_503_bursts_delay_copies_but_lose_none(
    tmp_path: Path,
) -> None:
    row = await run_fault("throttle", tmp_path)
    # Includes: no throttled request was repeated sooner than its Retry-After.
    assert_kept_promises(row)
    assert row.details["answered_429"] > 0 and row.details["answered_503"] > 0, markdown([row])


async def test_slow_link_cutting_connections_mid_blob_still_places_every_image(
    tmp_path: Path,
) -> None:
    row = await run_fault("slow-link", tmp_path)
    assert_kept_promises(row)
    assert row.details["cuts"] > 0, markdown([row])


async def test_partition_with_a_passing_probe_times_out_writes_and_heals(
    tmp_path: Path,
) -> None:
    row = await run_fault("partition", tmp_path)
    # Includes: no write was held longer than the client's request timeout (plus 1 s).
    assert_kept_promises(row)
    assert row.details["writes_held"] > 0, markdown([row])

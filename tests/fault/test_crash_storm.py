"""Crash safety (issue 5 item 5), quick size: SIGKILLs at random points of a replication storm.

``python -m tests.fault.storm --only crash --kills 20 --images 200`` runs the same storm big.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.figures import markdown
from tests.fault.storm import run_fault

pytestmark = pytest.mark.timeout(300)


async def test_sigkill_storm_runs_every_job_exactly_once_and_never_half_tags(
    tmp_path: Path,
) -> None:
    row = await run_fault("crash", tmp_path)
    table = markdown([row])
    # Every pushed tag got exactly its jobs (no webhook event lost), each succeeded once, and
    # no destination tag ever pointed at an incomplete image, not even right after a kill.
    assert row.violations == (), table
    assert row.jobs_expected >= row.details["images"] > 0, table
    assert (row.completed, row.duplicated, row.lost) == (row.jobs_expected, 0, 0), table
    assert (row.misplaced, row.incomplete) == (0, 0), table
    assert row.injections == 4 and row.recover_s is not None, table


async def test_reconcile_killed_with_copies_and_deletes_in_flight_converges_deleting_once(
    tmp_path: Path,
) -> None:
    row = await run_fault("reconcile", tmp_path)
    table = markdown([row])
    # The last run converged: every backfill copied, every planned removal done — each by one
    # DELETE at the registry, none outside the plan, the source untouched.
    assert row.violations == (), table
    assert (row.completed, row.duplicated, row.lost, row.misplaced) == (
        row.jobs_expected, 0, 0, 0,
    ), table  # fmt: skip
    assert row.details["deletes_at_prod_us"] == 4, table
    # At least one kill landed with copy and delete jobs in flight together.
    assert row.details["kills_copies_and_deletes_in_flight"] >= 1, table


async def test_two_replicas_on_postgresql_killed_at_random_run_every_job_once(
    tmp_path: Path,
) -> None:
    row = await run_fault("replicas", tmp_path)
    table = markdown([row])
    # SIGKILLs across both replicas (sometimes both down) while pushes and Replicate calls
    # arrived: every job of the intent succeeded once over both logs, every push event was
    # processed and completed, nothing stray or half-written.
    assert row.violations == (), table
    assert row.jobs_expected >= row.details["images"] > 0, table
    assert (row.completed, row.duplicated, row.lost) == (row.jobs_expected, 0, 0), table
    assert (row.misplaced, row.incomplete) == (0, 0), table
    assert row.injections >= 4 and row.recover_s is not None, table

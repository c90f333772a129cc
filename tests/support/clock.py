"""The year-ahead run of the clock-sensitive tests (scripts/test.sh): it must really run shifted.

scripts/test.sh runs ``pytest -m clock`` under libfaketime with the clock a year ahead, so a test,
README example or shipped config that only works near the day it was written fails at once instead
of a week later. If libfaketime did not take (a static binary, a missing library), the shifted run
would pass for the wrong reason; this plugin refuses to start it then.
"""

from __future__ import annotations

import os
import time

import pytest

SHIFT_DAYS = "POLICY_SIDECAR_TEST_CLOCK_SHIFT_DAYS"
REAL_EPOCH = "POLICY_SIDECAR_TEST_REAL_EPOCH"


def pytest_configure(config: pytest.Config) -> None:
    """Fail the session when a shift was asked for and the clock this process sees did not move."""
    shift = os.environ.get(SHIFT_DAYS)
    if not shift:
        return
    real = float(os.environ[REAL_EPOCH])
    moved_days = (time.time() - real) / 86400
    if moved_days < int(shift) - 1:
        raise pytest.UsageError(
            f"{SHIFT_DAYS}={shift} but the clock moved {moved_days:.2f} days: is libfaketime "
            "installed (scripts/install-system.sh) and preloaded (faketime -f +365d ...)?"
        )

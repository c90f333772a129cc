"""Every unit test also runs with the clock a year ahead (marker ``clock``, scripts/test.sh).

They take seconds, and the clock-reading ones among them (token expiry, scan age, retention) are
not all easy to spot; running all of them shifted costs little and misses none.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test collected below tests/unit with ``clock``."""
    for item in items:
        if "/tests/unit/" in str(item.path):
            item.add_marker(pytest.mark.clock)

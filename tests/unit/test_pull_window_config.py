"""``policy.replication.pull_window``: the sliding window of pull counts behind ``input.access``."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.errors import ConfigError


def _load(tmp_path: Path, text: str) -> float:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path).policy.replication.pull_window


def test_the_window_defaults_to_seven_days_and_reads_days_or_hours(tmp_path: Path) -> None:
    assert _load(tmp_path, "policy: {}\n") == 7 * 86400
    assert _load(tmp_path, "policy:\n  replication: {pull_window: 3d}\n") == 3 * 86400
    assert _load(tmp_path, "policy:\n  replication: {pull_window: 36h}\n") == 36 * 3600


def test_a_window_shorter_than_an_hour_is_refused_with_its_line(tmp_path: Path) -> None:
    # Pulls are counted per hour: a shorter window could not be honoured.
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, "policy:\n  replication:\n    pull_window: 10m\n")
    message = str(caught.value)
    assert "sidecar.yaml:3" in message and "policy.replication.pull_window" in message

"""``policy.health``: documented defaults, durations, refusals; the stored deferred request."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import HealthSettings, load_config
from sidecar.errors import ConfigError
from sidecar.model.decision import Caller, DecideRequest, ImageRef, TenantUsage
from sidecar.replicate.deferred import request_from_json, request_to_json


def _load(tmp_path: Path, health: str) -> HealthSettings:
    path = tmp_path / "sidecar.yaml"
    path.write_text(f"policy:\n  health:\n{health}", encoding="utf-8")
    return load_config(path).policy.health


def test_defaults_are_the_documented_ones() -> None:
    health = load_config(None).policy.health
    assert health == HealthSettings(
        enabled=True,
        interval_s=5.0,
        timeout_s=2.0,
        failure_threshold=3,
        success_threshold=2,
        min_dwell_s=30.0,
        sweep_interval_s=60.0,
        reconcile_window_s=86_400.0,
        reconcile_limit=500,
    )


def test_durations_take_seconds_or_go_style_strings(tmp_path: Path) -> None:
    health = _load(
        tmp_path,
        "    interval_s: 500ms\n    timeout_s: 0.25\n    min_dwell_s: 2m\n"
        "    failureThreshold: 5\n    reconcile_window_s: 1h\n    enabled: false\n",
    )
    assert (health.interval_s, health.timeout_s, health.min_dwell_s) == (0.5, 0.25, 120.0)
    assert (health.failure_threshold, health.reconcile_window_s) == (5, 3600.0)
    assert health.enabled is False


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("    interval: 5\n", "did you mean 'interval_s'"),
        ("    failure_threshold: 0\n", "policy.health.failure_threshold"),
        ("    timeout_s: soon\n", "policy.health.timeout_s"),
        ("    enabled: maybe\n", "policy.health.enabled"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, line: str, named: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, line)
    assert named in str(err.value)


def test_a_deferred_request_round_trips_without_health_or_clock() -> None:
    request = DecideRequest(
        image=ImageRef("ci", "web/app", "prod-1", "sha256:" + "a" * 64),
        labels={"criticality": "high"},
        annotations={"org.opencontainers.image.source": "git"},
        created_at="2026-01-01T00:00:00Z",
        size_bytes=42,
        platforms=("linux/amd64",),
        event="push",
        caller=Caller("ci-bot", "acme", ("deployer",)),
        now="2026-01-02T00:00:00Z",
        registry_health={"prod-us": False},
        access={"us-east-1": 3},
        tenant_usage=TenantUsage("acme", 1, 2),
    )
    again = request_from_json(request_to_json(request), event="reconcile")
    assert again.event == "reconcile"
    assert again.registry_health == {} and again.now is None
    assert (again.image, again.labels, again.caller, again.tenant_usage) == (
        request.image,
        request.labels,
        request.caller,
        request.tenant_usage,
    )
    assert (again.created_at, again.size_bytes, again.platforms, again.access) == (
        request.created_at,
        request.size_bytes,
        request.platforms,
        request.access,
    )

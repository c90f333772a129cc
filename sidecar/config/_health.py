"""The ``policy.health`` section: registry probing, the health breaker's hysteresis, recovery."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sidecar.config._read import Node, optional

__all__ = ["HealthSettings", "parse_health"]


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """How registries are probed, when their health flips, and how recovery catches up."""

    enabled: bool = True
    # One probe (GET /v2/ with the registry's auth) of every registry per interval.
    interval_s: float = 5.0
    timeout_s: float = 2.0
    # Hysteresis: consecutive probe outcomes needed to flip, and the least time between flips.
    failure_threshold: int = 3
    success_threshold: int = 2
    min_dwell_s: float = 30.0
    # Safety net: parked jobs and deferred work of healthy registries are retried this often.
    sweep_interval_s: float = 60.0
    # The reconcile pass after an outage checks images of jobs that succeeded this recently.
    reconcile_window_s: float = 86_400.0
    reconcile_limit: int = 500


def parse_health(node: Node) -> HealthSettings:
    """Parse ``policy.health``; durations take seconds or ``"30s"``-style strings."""
    f = node.fields(HealthSettings.__dataclass_fields__, strict=True)
    d = HealthSettings()

    def seconds(minimum: float) -> Callable[[Node], float]:
        return lambda n: n.seconds(minimum=minimum)

    def count(n: Node) -> int:
        return n.integer(minimum=1)

    return HealthSettings(
        enabled=optional(f, "enabled", lambda n: n.boolean(), d.enabled),
        interval_s=optional(f, "interval_s", seconds(0.05), d.interval_s),
        timeout_s=optional(f, "timeout_s", seconds(0.01), d.timeout_s),
        failure_threshold=optional(f, "failure_threshold", count, d.failure_threshold),
        success_threshold=optional(f, "success_threshold", count, d.success_threshold),
        min_dwell_s=optional(f, "min_dwell_s", seconds(0.0), d.min_dwell_s),
        sweep_interval_s=optional(f, "sweep_interval_s", seconds(0.1), d.sweep_interval_s),
        reconcile_window_s=optional(f, "reconcile_window_s", seconds(0.0), d.reconcile_window_s),
        reconcile_limit=optional(
            f, "reconcile_limit", lambda n: n.integer(minimum=0), d.reconcile_limit
        ),
    )

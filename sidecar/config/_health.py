"""The ``policy.health`` section: registry probing, the health breaker's hysteresis, recovery."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import ConfigDict, Field

from sidecar.config._model import Bool, Duration, Int, read_record
from sidecar.config._read import Node

__all__ = ["HealthSettings", "parse_health"]


@dataclass(frozen=True, slots=True)
class HealthSettings:
    """How registries are probed, when their health flips, and how recovery catches up."""

    __pydantic_config__ = ConfigDict(extra="forbid")

    enabled: Bool = True
    # One probe (GET /v2/ with the registry's auth) of every registry per interval.
    interval_s: Annotated[Duration, Field(ge=0.05)] = 5.0
    timeout_s: Annotated[Duration, Field(ge=0.01)] = 2.0
    # Hysteresis: consecutive probe outcomes needed to flip, and the least time between flips.
    failure_threshold: Annotated[Int, Field(ge=1)] = 3
    success_threshold: Annotated[Int, Field(ge=1)] = 2
    min_dwell_s: Annotated[Duration, Field(ge=0)] = 30.0
    # Safety net: parked jobs and deferred work of healthy registries are retried this often.
    sweep_interval_s: Annotated[Duration, Field(ge=0.1)] = 60.0
    # The reconcile pass after an outage checks images of jobs that succeeded this recently.
    reconcile_window_s: Annotated[Duration, Field(ge=0)] = 86_400.0
    reconcile_limit: Annotated[Int, Field(ge=0)] = 500


def parse_health(node: Node) -> HealthSettings:
    """Parse ``policy.health``; durations take seconds or ``"30s"``-style strings."""
    return read_record(HealthSettings, node)

"""Protocols for the seams between the sidecar's parts, so each side can be swapped or doubled in tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sidecar.model import DecideRequest, DecisionResult, EngineAnswer, PolicyInput

__all__ = ["DecisionStore", "Enricher", "PolicyEngine"]


class PolicyEngine(Protocol):
    """Evaluates a policy input and returns the raw decision document with its bundle revision."""

    async def evaluate(self, policy_input: Mapping[str, Any]) -> EngineAnswer:
        """Evaluate ``data.replication.decision``; raise PolicyUnavailable/PolicyError on failure."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class Enricher(Protocol):
    """Turns a validated request into the complete policy input (DESIGN §3.1)."""

    async def enrich(self, request: DecideRequest) -> PolicyInput:
        """Return the policy input for ``request``; never raises for a missing fact."""
        ...


class DecisionStore(Protocol):
    """Keeps decision records so ``Explain`` can return them by id."""

    def put(self, result: DecisionResult) -> None:
        """Store a decision record."""
        ...

    def get(self, decision_id: str) -> DecisionResult | None:
        """Return the record for ``decision_id``, or None when unknown or expired."""
        ...

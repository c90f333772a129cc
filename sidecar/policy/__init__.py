"""Talking to Open Policy Agent: the REST engine and the supervised local OPA process."""

from __future__ import annotations

from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import BATCH_PATH, OpaEngine

__all__ = ["BATCH_PATH", "ManagedOpa", "OpaEngine"]

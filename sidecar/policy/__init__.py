"""Talking to Open Policy Agent: the REST engine and the supervised local OPA process."""

from __future__ import annotations

from sidecar.policy._api_guard import new_api_token
from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import BATCH_PATH, OpaEngine

__all__ = ["BATCH_PATH", "ManagedOpa", "OpaEngine", "new_api_token"]

"""Talking to Open Policy Agent: the REST engine and the supervised local OPA process."""

from __future__ import annotations

from sidecar.policy._api_guard import new_api_token
from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import OpaEngine

__all__ = ["ManagedOpa", "OpaEngine", "new_api_token"]

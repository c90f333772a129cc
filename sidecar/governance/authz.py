"""Asks OPA whether a caller may perform an admin action: ``data.system.authz`` (rego/system).

The sidecar never decides an admin call itself: the bundle's role map and bindings do, evaluated
by the same OPA that serves the replication decisions, so a published bundle changes who may do
what exactly when it activates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.governance.identity import Caller
from sidecar.policy.opa import OpaEngine

__all__ = ["AuthzDecision", "OpaAuthorizer"]


@dataclass(frozen=True, slots=True)
class AuthzDecision:
    """OPA's answer: ``allow``, the caller's roles, and the bundle revision that decided.

    ``tenants`` and ``platform``: the tenants the caller's bindings name, and whether one of them
    names none (the caller acts for the platform); the data plane derives ``caller`` from them.
    """

    allow: bool
    roles: tuple[str, ...]
    bundle_revision: str
    tenants: tuple[str, ...] = ()
    platform: bool = False


class OpaAuthorizer:
    """Evaluates ``data.system.authz`` on an OPA server (PolicyUnavailable when unreachable)."""

    def __init__(self, opa_url: str, *, timeout_s: float, token: str | None = None) -> None:
        self._engine = OpaEngine(
            opa_url, timeout_s=timeout_s, path="system/authz", metrics=False, token=token
        )

    async def authorize(
        self, caller: Caller, action: str, target: Mapping[str, Any]
    ) -> AuthzDecision:
        """Return whether ``caller`` may do ``action`` on ``target`` (fails closed)."""
        answer = await self._engine.evaluate(
            {"caller": caller.to_input(), "action": action, "target": dict(target)}
        )
        return AuthzDecision(
            allow=answer.result.get("allow") is True,
            roles=_strings(answer.result.get("roles")),
            bundle_revision=answer.bundle_revision,
            tenants=_strings(answer.result.get("tenants")),
            platform=answer.result.get("platform") is True,
        )

    async def close(self) -> None:
        """Release the connection to OPA."""
        await self._engine.close()


def _strings(value: object) -> tuple[str, ...]:
    """A Rego set (a JSON list) of strings, sorted; anything else is empty."""
    return tuple(sorted(str(v) for v in value)) if isinstance(value, list) else ()

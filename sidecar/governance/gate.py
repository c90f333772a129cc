"""The data plane's gate: who calls PolicyService, whether ``data.system.authz`` lets them, as whom.

With ``policy.auth`` configured every PolicyService call is authenticated like an admin call
(client certificate, bearer token, or the unix socket's bound subject) and authorised by the
bundle's ``data.system.authz`` with action = the RPC's name. The decision's ``caller`` is then
derived from that identity: subject from the credential, roles and tenant from the bindings; the
request's ``caller`` may only narrow it (drop roles, pick one of the identity's tenants), and a
request that widens it is refused PERMISSION_DENIED naming the field.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from sidecar.errors import PermissionDenied, ResourceExhausted, SidecarError
from sidecar.governance.authz import AuthzDecision, OpaAuthorizer
from sidecar.governance.identity import Authenticator, Caller, CallerUnknown, Credentials
from sidecar.governance.ratelimit import CallRateLimiter, peer_bucket
from sidecar.model.decision import Caller as DecisionCaller
from sidecar.telemetry import get_logger

__all__ = ["AUTHZ_CACHE_S", "Admission", "DataPlaneGate", "TenantScope"]

_log = get_logger("sidecar.governance.gate")
# An allowed (identity, action, tenant) is not asked again for this long: a Decide-heavy caller
# then costs one OPA authorisation query a second, not one per decision. A refusal is never kept.
AUTHZ_CACHE_S = 1.0
_CACHE_ENTRIES = 4096
_UNSET_SUBJECTS = ("", "anonymous")  # what an empty request caller.subject reads as


@dataclass(frozen=True, slots=True)
class TenantScope:
    """Which tenant owns a repository (``policy.tenancy.prefixes``) or a registry (``tenants``)."""

    prefixes: Mapping[str, str]
    registry_tenants: Mapping[
        str, tuple[str, ...]
    ]  # registry name → dedicated tenants (none: shared)

    def repository_tenant(self, repository: str) -> str | None:
        """Return the tenant of the longest configured prefix of ``repository`` (the enricher's rule)."""
        for end in range(len(repository), 0, -1):
            tenant = self.prefixes.get(repository[:end])
            if tenant is not None:
                return tenant
        return None


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted call: the authenticated identity and what it may act as."""

    identity: Caller
    roles: tuple[str, ...]
    tenants: tuple[str, ...]  # the tenants its bindings name
    platform: bool  # a binding names no tenant: it acts for every tenant
    scope: TenantScope

    def narrow(self, requested: DecisionCaller) -> DecisionCaller:
        """Return the decision caller: the identity, narrowed as ``requested`` asks (never widened)."""
        me = self.identity.subject
        if requested.subject not in (*_UNSET_SUBJECTS, me):
            raise PermissionDenied(
                f"caller.subject: {requested.subject!r} is not the authenticated caller {me!r}"
            )
        extra = sorted(set(requested.roles) - set(self.roles))
        if extra:
            held = ", ".join(self.roles) or "none"
            raise PermissionDenied(f"caller.roles: {me} does not hold {extra[0]!r} (roles: {held})")
        return DecisionCaller(
            me, self._tenant(requested.tenant), tuple(requested.roles) or self.roles
        )

    def _tenant(self, requested: str | None) -> str | None:
        if self.platform:
            return requested  # a platform caller may act for one tenant (narrower) or all
        if requested:
            if requested not in self.tenants:
                raise PermissionDenied(
                    f"caller.tenant: {self.identity.subject} acts for {_listed(self.tenants)}, "
                    f"not {requested!r}"
                )
            return requested
        if len(self.tenants) == 1:
            return self.tenants[0]
        # No tenant would make it a platform caller: a widening. It must pick.
        raise PermissionDenied(
            f"caller.tenant: {self.identity.subject} acts for {_listed(self.tenants)}: name one"
        )

    def sees_tenant(self, tenant: str | None) -> bool:
        """Whether data of ``tenant`` (None: no tenant, the platform's) is visible to the caller."""
        return self.platform or (tenant is not None and tenant in self.tenants)

    def sees_repository(self, repository: str) -> bool:
        """Whether jobs and decisions about ``repository`` are visible to the caller."""
        return self.platform or self.sees_tenant(self.scope.repository_tenant(repository))

    def sees_registry(self, registry: str) -> bool:
        """Whether the caller may learn what ``registry`` holds: shared, or dedicated to it."""
        dedicated = self.scope.registry_tenants.get(registry, ())
        return self.platform or not dedicated or any(t in self.tenants for t in dedicated)

    def sees_record(self, record_input: Mapping[str, Any] | None) -> bool:
        """Whether a decision record (its policy input) is one of the caller's tenant's."""
        if self.platform:
            return True
        if not isinstance(record_input, Mapping):
            return False
        caller = record_input.get("caller")
        tenant = caller.get("tenant") if isinstance(caller, Mapping) else None
        if tenant is None:  # a platform caller's decision: the image's tenant owns it
            image = record_input.get("image")
            tenant = image.get("tenant") if isinstance(image, Mapping) else None
        return isinstance(tenant, str) and self.sees_tenant(tenant)


class DataPlaneGate:
    """Authenticates and authorises each PolicyService call (fails closed; OPA decides)."""

    def __init__(
        self,
        authenticator: Authenticator,
        authorizer: OpaAuthorizer,
        scope: TenantScope,
        *,
        on_refused: Callable[[str, str], None] | None = None,
        failures: CallRateLimiter | None = None,
        limiter: CallRateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._failures = failures  # failed authentications per peer address
        self._limiter = limiter  # calls per authenticated identity
        self._authn = authenticator
        self._authz = authorizer
        self._scope = scope
        self._on_refused = on_refused
        self._clock = clock
        self._allowed: OrderedDict[tuple[Any, ...], tuple[AuthzDecision, float]] = OrderedDict()

    async def admit(
        self, credentials: Credentials, action: str, tenant: str | None = None
    ) -> Admission:
        """Return the admission of a call of ``action`` (acting for ``tenant``, if it names one).

        Raises CallerUnknown (UNAUTHENTICATED), PermissionDenied or ResourceExhausted (a peer
        over its failed authentications, an identity over its rate); each refusal is logged and
        counted.
        """
        peer = peer_bucket(credentials.peer)
        if (
            self._failures is not None
            and self._failures.exhausted(peer)
            and not self._authn.is_cheap(credentials)
        ):
            # Before any bcrypt work: a guessing flood must not keep the bcrypt pool busy, while
            # callers on the same host with cheap credentials (a certificate, a sha256-hashed or
            # recently verified token) are still served.
            self._failures.try_acquire(peer)  # an empty bucket: counts the refusal, takes nothing
            self._refuse(
                action,
                ResourceExhausted(
                    f"{peer} failed authentication too often to have a bcrypt-hashed token "
                    "checked now; retry later (policy.auth.failed_auth_limit)",
                    "policy.auth.failed_auth_limit",
                ),
                peer,
            )
        try:
            identity = await self._authn.authenticate(credentials)
        except CallerUnknown as exc:
            if self._failures is not None:
                self._failures.try_acquire(peer)
            self._refused(action, exc, exc.actor)
            raise
        if self._limiter is not None and not self._limiter.try_acquire(identity.subject):
            limit = self._limiter.limit
            self._refuse(
                action,
                ResourceExhausted(
                    f"{action}: {identity.subject} is over its rate of {limit.rate:g} calls/s "
                    f"(burst {limit.burst}); retry later (policy.auth.rate_limit)",
                    "policy.auth.rate_limit",
                ),
                identity.subject,
            )
        try:
            decision = await self._decision(identity, action, tenant)
        except SidecarError as exc:
            self._refused(action, exc, identity.subject)
            raise
        if not decision.allow:
            roles = ", ".join(decision.roles) or "none"
            refusal = PermissionDenied(
                f"{identity.subject} (roles: {roles}) may not call {action} "
                f"(data.system.authz, bundle revision {decision.bundle_revision or 'unknown'})"
            )
            self._refused(action, refusal, identity.subject)
            raise refusal
        return Admission(identity, decision.roles, decision.tenants, decision.platform, self._scope)

    def refused(self, action: str, exc: SidecarError, actor: str) -> None:
        """Log and count a refusal found after admission (e.g. a widening request caller)."""
        self._refused(action, exc, actor)

    async def _decision(self, identity: Caller, action: str, tenant: str | None) -> AuthzDecision:
        key = (identity.names, action, tenant)
        now = self._clock()
        cached = self._allowed.get(key)
        if cached is not None and now - cached[1] <= AUTHZ_CACHE_S:
            return cached[0]
        target = {
            "service": "PolicyService",
            "tenants": [tenant] if tenant else [],
            "global": False,
        }
        decision = await self._authz.authorize(identity, action, target)
        if decision.allow:
            self._allowed[key] = (decision, now)
            self._allowed.move_to_end(key)
            while len(self._allowed) > _CACHE_ENTRIES:
                self._allowed.popitem(last=False)
        return decision

    def _refuse(self, action: str, exc: SidecarError, actor: str) -> NoReturn:
        self._refused(action, exc, actor)
        raise exc

    def _refused(self, action: str, exc: SidecarError, actor: str) -> None:
        code = exc.code.value
        _log.warning(
            "data-plane call refused", action=action, code=code, actor=actor, error=exc.message
        )
        if self._on_refused is not None:
            self._on_refused(action, code)


def _listed(tenants: Sequence[str]) -> str:
    return "tenants [" + ", ".join(tenants) + "]" if tenants else "no tenant"

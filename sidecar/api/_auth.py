"""Who a gRPC call comes from, as its listener saw it, and the data plane's gate at the servicers.

Each listener is its own gRPC server, so a call's listener is known from the servicer that
answers it, never guessed from an address. A TLS listener's client certificate is read from the
call's auth context (the connection gRPC's TLS verified), a unix socket's callers are its bound
subject, and a bearer token comes from the ``authorization`` metadata.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from sidecar.api.status import abort
from sidecar.errors import PermissionDenied, SidecarError
from sidecar.governance import (
    Admission,
    Credentials,
    DataPlaneGate,
    PeerCertificate,
    certificate_from_pem,
)
from sidecar.model.decision import Caller

__all__ = ["CallAuth", "Listener", "bearer_token", "call_credentials"]

_TLS_KINDS = ("tls", "admin-tls")


@dataclass(frozen=True, slots=True)
class Listener:
    """One address the sidecar serves gRPC on and how its callers are identified.

    ``kind``: ``plain`` (policy.listen: tokens only), ``tls`` (policy.auth.listen, mTLS),
    ``admin-tls`` (policy.admin.listen) or ``unix`` (policy.auth.unix: every caller is ``bound``).
    """

    kind: str
    address: str
    credentials: grpc.ServerCredentials | None = None
    bound: str | None = None
    mode: int = 0o600


def bearer_token(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """Return the ``authorization: Bearer`` token of a call, if any."""
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def _certificate(context: grpc.aio.ServicerContext[Any, Any]) -> PeerCertificate | None:
    auth = context.auth_context() or {}
    if list(auth.get("transport_security_type") or ()) != [b"ssl"]:
        return None
    pem = next(iter(auth.get("x509_pem_cert") or ()), b"")
    return certificate_from_pem(pem) if pem else None


def call_credentials(
    context: grpc.aio.ServicerContext[Any, Any], listener: Listener
) -> Credentials:
    """Return what the call presented on ``listener``."""
    tls = listener.kind in _TLS_KINDS
    return Credentials(
        peer=context.peer() or "",
        bearer=bearer_token(context),
        certificate=_certificate(context) if tls else None,
        via_tls=listener.kind == "admin-tls",
        bound=listener.bound if listener.kind == "unix" else None,
    )


class CallAuth:
    """The gate as PolicyService's servicer on one listener uses it: refusals become statuses."""

    def __init__(self, gate: DataPlaneGate, listener: Listener) -> None:
        self._gate = gate
        self._listener = listener

    async def admit(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        action: str,
        tenant: str | None = None,
    ) -> Admission:
        """Authenticate and authorise the call, or abort UNAUTHENTICATED / PERMISSION_DENIED."""
        try:
            return await self._gate.admit(call_credentials(context, self._listener), action, tenant)
        except SidecarError as exc:
            await abort(context, exc)

    def narrow(self, admission: Admission, action: str, requested: Caller) -> Caller:
        """Return the decision caller (raises PermissionDenied for a widening request caller)."""
        try:
            return admission.narrow(requested)
        except SidecarError as exc:
            self._gate.refused(action, exc, admission.identity.subject)
            raise

    async def deny(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        admission: Admission,
        action: str,
        message: str,
    ) -> NoReturn:
        """Refuse an admitted call that reached another tenant's data (logged and counted)."""
        exc = PermissionDenied(message)
        self._gate.refused(action, exc, admission.identity.subject)
        await abort(context, exc)

    async def caller(
        self,
        context: grpc.aio.ServicerContext[Any, Any],
        action: str,
        requested: Caller,
    ) -> Caller:
        """Admit a deciding call and return its caller, or abort naming the refusal."""
        admission = await self.admit(context, action, requested.tenant)
        try:
            return self.narrow(admission, action, requested)
        except SidecarError as exc:
            await abort(context, exc)

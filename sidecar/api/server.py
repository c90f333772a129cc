"""Builds the gRPC servers: PolicyService, PolicyAdmin, health checking and server reflection.

One gRPC server per listener (policy.listen, the mTLS listeners, the unix socket), each with
servicers that know which listener they answer for: that is how a call's identity source is
known (governance/gate.py), without looking anything up by peer address.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.trace import TracerProvider

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api._auth import CallAuth, Listener
from sidecar.api._decode import DecodeErrorInterceptor
from sidecar.api._metrics import MetricsInterceptor
from sidecar.api.admin_service import AdminServicer
from sidecar.api.policy_service import PolicyServicer
from sidecar.config import Limits
from sidecar.decide import DecisionService
from sidecar.errors import ConfigError
from sidecar.governance import AdminService, DataPlaneGate
from sidecar.health import PullResolver
from sidecar.reconcile import Reconciler
from sidecar.replicate import ReplicationService
from sidecar.telemetry import Metrics

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "BoundListener",
    "GrpcServer",
    "Listener",
    "tls_credentials",
]

DEFAULT_MAX_MESSAGE_BYTES = Limits().max_message_bytes

_POLICY_SERVICE = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
_ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["PolicyAdmin"].full_name
_SERVICES = (
    _POLICY_SERVICE,
    _ADMIN_SERVICE,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


@dataclass(frozen=True, slots=True)
class BoundListener:
    """A listener once bound: its kind, the address asked for and the port it got (0: unix)."""

    kind: str
    address: str
    port: int


def tls_credentials(
    setting: str, cert_file: str, key_file: str, client_ca_file: str | None
) -> grpc.ServerCredentials:
    """Return gRPC TLS credentials; with a client CA, a verified client certificate is required."""
    from cryptography import x509  # noqa: PLC0415 - checks the files before gRPC gets them
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

    try:
        cert = Path(cert_file).read_bytes()
        key = Path(key_file).read_bytes()
        ca = Path(client_ca_file).read_bytes() if client_ca_file else None
        x509.load_pem_x509_certificates(cert)
        load_pem_private_key(key, password=None)
        if ca is not None:
            x509.load_pem_x509_certificates(ca)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(setting, f"cannot load the TLS files: {exc}") from exc
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


@contextlib.contextmanager
def _umask(mode: int) -> Iterator[None]:
    """Create files (the unix socket) with at most ``mode``: no window where others can connect."""
    previous = os.umask(0o777 & ~mode)
    try:
        yield
    finally:
        os.umask(previous)


class GrpcServer:
    """The sidecar's gRPC endpoints; health reports NOT_SERVING until :meth:`set_serving`."""

    def __init__(
        self,
        decisions: DecisionService,
        listen: str,
        replication: ReplicationService | None = None,
        *,
        resolver: PullResolver | None = None,
        admin: AdminService | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        admin_max_message_bytes: int | None = None,
        listeners: Sequence[Listener] = (),
        gate: DataPlaneGate | None = None,
        reconciler: Reconciler | None = None,
        metrics: Metrics | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self._listeners = (Listener("plain", listen), *listeners)
        # Decision requests are small: max_message_bytes (policy.limits) caps them. Bundles travel
        # in one message, so with the admin API hosted the transport cap is the admin one (the
        # admin API checks and audits its own limit), and the interceptor holds every other
        # service to max_message_bytes before parsing. Never gRPC's default (4 MiB) or unlimited.
        transport_cap = max(max_message_bytes, admin_max_message_bytes or 0)
        if admin is None:
            transport_cap = max_message_bytes
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stubs lack aio
        self._policy: list[PolicyServicer] = []
        self._servers: list[grpc.aio.Server] = []
        for listener in self._listeners:
            # A request that does not parse is INVALID_ARGUMENT, like any other bad input. The
            # metrics interceptor is outermost, so it counts the status such a request gets.
            decode = DecodeErrorInterceptor(
                max_message_bytes if transport_cap > max_message_bytes else None,
                uncapped=(_ADMIN_SERVICE,),
            )
            counted = [MetricsInterceptor(metrics)] if metrics is not None else []
            # OpenTelemetry's own server span (rpc.system/service/method, the status code), which
            # continues the caller's traceparent; the decision's spans are its children.
            traced = (
                [aio_server_interceptor(tracer_provider=tracer_provider)]  # type: ignore[no-untyped-call]  # the package ships no annotations
                if tracer_provider is not None
                else []
            )
            server = grpc.aio.server(
                interceptors=[*counted, *traced, decode],
                options=[
                    # Callers multiplex many decisions over one connection (DESIGN: throughput).
                    ("grpc.max_concurrent_streams", 4096),
                    ("grpc.so_reuseport", 0),
                    ("grpc.max_receive_message_length", transport_cap),
                ],
            )
            servicer = PolicyServicer(
                decisions,
                replication,
                resolver,
                auth=CallAuth(gate, listener) if gate is not None else None,
                reconciler=reconciler,
            )
            self._policy.append(servicer)
            pb_grpc.add_PolicyServiceServicer_to_server(servicer, server)
            if admin is not None:
                pb_grpc.add_PolicyAdminServicer_to_server(
                    AdminServicer(admin, listener, reconciler=reconciler), server
                )
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            reflection.enable_server_reflection(_SERVICES, server)
            self._servers.append(server)
        self.bound: dict[str, BoundListener] = {}
        self.port = 0

    @property
    def stream_answers_held(self) -> int:
        """Return how many DecideStream answers (every listener) wait to be taken by gRPC."""
        return sum(s.stream_answers_held for s in self._policy)

    async def start(self) -> None:
        """Bind every listener and start serving (health: NOT_SERVING)."""
        for listener, server in zip(self._listeners, self._servers, strict=True):
            self.bound[listener.kind] = BoundListener(
                listener.kind, listener.address, _bind(server, listener)
            )
        self.port = self.bound["plain"].port
        for server in self._servers:
            await server.start()
        await self.set_serving(False)

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING (ready to decide) or NOT_SERVING through gRPC health checking."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", _POLICY_SERVICE):
            await self._health.set(name, status)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting calls and let in-flight ones finish within ``grace_s``."""
        await self._health.enter_graceful_shutdown()
        for server in self._servers:
            await server.stop(grace_s)

    async def wait(self) -> None:
        """Block until the servers terminate."""
        for server in self._servers:
            await server.wait_for_termination()


_SETTING = {
    "plain": "policy.listen",
    "tls": "policy.auth.listen",
    "admin-tls": "policy.admin.listen",
    "unix": "policy.auth.unix.path",
}


def _bind(server: grpc.aio.Server, listener: Listener) -> int:
    """Bind ``listener`` on ``server``; return the port (0 for a unix socket)."""
    try:
        if listener.kind == "unix":
            path = listener.address.removeprefix("unix:")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            # gRPC binds and listens here, before start(): the socket file must never exist
            # with wider permissions than configured, not even for a moment.
            with _umask(listener.mode):
                server.add_insecure_port(f"unix:{path}")
            os.chmod(path, listener.mode)
            return 0
        if listener.credentials is not None:
            return server.add_secure_port(listener.address, listener.credentials)
        return server.add_insecure_port(listener.address)
    except (RuntimeError, OSError) as exc:
        setting = _SETTING.get(listener.kind, "policy.listen")
        raise ConfigError(setting, f"cannot listen on {listener.address}: {exc}") from exc

"""Builds the gRPC server: PolicyService, PolicyAdmin, health checking and server reflection."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api._decode import DecodeErrorInterceptor
from sidecar.api.admin_service import AdminServicer
from sidecar.api.policy_service import PolicyServicer
from sidecar.config import Limits
from sidecar.decide import DecisionService
from sidecar.errors import ConfigError
from sidecar.health import PullResolver
from sidecar.reconcile import Reconciler
from sidecar.replicate import ReplicationService

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "GrpcServer"]

DEFAULT_MAX_MESSAGE_BYTES = Limits().max_message_bytes

_POLICY_SERVICE = pb.DESCRIPTOR.services_by_name["PolicyService"].full_name
_ADMIN_SERVICE = pb.DESCRIPTOR.services_by_name["PolicyAdmin"].full_name
_SERVICES = (
    _POLICY_SERVICE,
    _ADMIN_SERVICE,
    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    reflection.SERVICE_NAME,
)


class GrpcServer:
    """The sidecar's gRPC endpoint; health reports NOT_SERVING until :meth:`set_serving`."""

    def __init__(
        self,
        decisions: DecisionService,
        listen: str,
        replication: ReplicationService | None = None,
        *,
        resolver: PullResolver | None = None,
        admin: AdminServicer | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        admin_max_message_bytes: int | None = None,
        relay_port: bool = False,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._listen = listen
        # The TLS admin listener relays to a loopback port of its own (governance/tls_front.py).
        self._relay_port = relay_port
        self.internal_port = 0
        # Decision requests are small: max_message_bytes (policy.limits) caps them. Bundles travel
        # in one message, so with the admin API hosted the transport cap is the admin one (the
        # admin API checks and audits its own limit), and the interceptor holds every other
        # service to max_message_bytes before parsing. Never gRPC's default (4 MiB) or unlimited.
        transport_cap = max(max_message_bytes, admin_max_message_bytes or 0)
        if admin is None:
            transport_cap = max_message_bytes
        self._server = grpc.aio.server(
            # A request that does not parse is INVALID_ARGUMENT, like any other bad input.
            interceptors=[
                DecodeErrorInterceptor(
                    max_message_bytes if transport_cap > max_message_bytes else None,
                    uncapped=(_ADMIN_SERVICE,),
                )
            ],
            options=[
                # Callers multiplex many decisions over one connection (DESIGN: high throughput).
                ("grpc.max_concurrent_streams", 4096),
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", transport_cap),
            ],
        )
        pb_grpc.add_PolicyServiceServicer_to_server(
            PolicyServicer(decisions, replication, resolver, reconciler), self._server
        )
        if admin is not None:
            pb_grpc.add_PolicyAdminServicer_to_server(admin, self._server)
        self._health = health.aio.HealthServicer()  # type: ignore[attr-defined]  # stubs lack aio
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(_SERVICES, self._server)
        self.port = 0

    async def start(self) -> None:
        """Bind the listen address and start serving (health: NOT_SERVING)."""
        try:
            self.port = self._server.add_insecure_port(self._listen)
        except RuntimeError as exc:
            raise ConfigError("policy.listen", f"cannot listen on {self._listen}: {exc}") from exc
        if self._relay_port:
            self.internal_port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
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
        await self._server.stop(grace_s)

    async def wait(self) -> None:
        """Block until the server terminates."""
        await self._server.wait_for_termination()

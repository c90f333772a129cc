"""A local GCP Secret Manager: ``google.cloud.secretmanager.v1.SecretManagerService`` over gRPC.

The service is served with the published request and response messages of the
``google-cloud-secret-manager`` package (its proto-plus types serialize the wire format of
``google/cloud/secretmanager/v1/service.proto``), so the real client talks to it unchanged:
``client_options={"api_endpoint": server.endpoint}`` over a plaintext channel, no credentials.
``AccessSecretVersion`` answers like the real service: NOT_FOUND for an unknown secret or
version, PERMISSION_DENIED for a secret marked denied, FAILED_PRECONDITION for a disabled version,
and a payload with its CRC32C.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import types

__all__ = ["SERVICE", "GcpSecretServer", "gcp_secret_server"]

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
_NAME = re.compile(r"^projects/([^/]+)/secrets/([^/]+)/versions/([^/]+)$")


@dataclass
class GcpSecretServer:
    """The running emulator: its HOST:PORT, the secrets it holds and the names it was asked for."""

    endpoint: str
    versions: dict[tuple[str, str], list[bytes]] = field(default_factory=dict)
    denied: set[tuple[str, str]] = field(default_factory=set)
    disabled: set[tuple[str, str, int]] = field(default_factory=set)
    asked: list[str] = field(default_factory=list)
    # The call metadata of every request (e.g. to see that no credentials were sent).
    metadata: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add_version(self, project: str, secret: str, data: bytes | str) -> int:
        """Add a version (as AddSecretVersion does) and return its number."""
        payload = data.encode() if isinstance(data, str) else data
        with self.lock:
            versions = self.versions.setdefault((project, secret), [])
            versions.append(payload)
            return len(versions)

    def _access(
        self, request: types.AccessSecretVersionRequest, context: grpc.ServicerContext
    ) -> types.AccessSecretVersionResponse:
        with self.lock:
            self.asked.append(request.name)
            self.metadata.append({k: str(v) for k, v in context.invocation_metadata()})
            found = _NAME.match(request.name)
            if found is None:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed secret version name")
            project, secret, version = found.groups()
            if (project, secret) in self.denied:
                context.abort(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"Permission 'secretmanager.versions.access' denied for resource "
                    f"'{request.name}' (or it may not exist).",
                )
            versions = self.versions.get((project, secret), [])
            number = (
                len(versions) if version == "latest" else int(version) if version.isdigit() else 0
            )
            if not versions or not 1 <= number <= len(versions):
                context.abort(
                    grpc.StatusCode.NOT_FOUND, f"Secret Version [{request.name}] not found."
                )
            if (project, secret, number) in self.disabled:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"Secret Version [{request.name}] is disabled.",
                )
            data = versions[number - 1]
        return types.AccessSecretVersionResponse(
            name=f"projects/{project}/secrets/{secret}/versions/{number}",
            payload=types.SecretPayload(data=data, data_crc32c=google_crc32c.value(data)),
        )


@contextlib.contextmanager
def gcp_secret_server() -> Iterator[GcpSecretServer]:
    """Serve the emulator on a free loopback port until the block exits."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    port = server.add_insecure_port("127.0.0.1:0")
    emulator = GcpSecretServer(f"127.0.0.1:{port}")
    handler = grpc.unary_unary_rpc_method_handler(
        emulator._access,
        request_deserializer=types.AccessSecretVersionRequest.deserialize,
        response_serializer=types.AccessSecretVersionResponse.serialize,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"AccessSecretVersion": handler}),)
    )
    server.start()
    try:
        yield emulator
    finally:
        server.stop(grace=None).wait(5)

"""The TLS admin listener: terminates TLS, records the client certificate, forwards to gRPC.

Why not gRPC's own TLS: grpcio's server credentials either ignore client certificates or refuse
the handshake for any certificate the client CA did not sign, so a stranger's certificate never
reaches the API and cannot be answered UNAUTHENTICATED or audited. Here OpenSSL verifies the
client certificate against the CA as usual, but the verdict is recorded instead of aborting the
handshake; the connection is then relayed to the sidecar's gRPC server on loopback and registered
in the :class:`ConnectionRegistry`, where the admin API reads the verdict for each call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from cryptography import x509
from OpenSSL import SSL

from sidecar.errors import ConfigError
from sidecar.governance.identity import ConnectionRegistry, PeerCertificate
from sidecar.telemetry import get_logger

__all__ = ["TlsFront"]

_log = get_logger("sidecar.governance.tls")
_CHUNK = 65536
_HANDSHAKE_TIMEOUT_S = 10.0
# Used when OpenSSL's own message cannot be read (private API, see _verify_error).
_VERIFY_ERRORS = {
    2: "unable to get issuer certificate",
    7: "certificate signature failure",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate",
    21: "unable to verify the first certificate",
    26: "unsupported certificate purpose",
}


class TlsFront:
    """Listens on ``host:port`` with TLS and relays each connection to ``backend_port``."""

    def __init__(
        self,
        listen: str,
        *,
        cert_file: str,
        key_file: str,
        client_ca_file: str | None,
        backend_port: int,
        connections: ConnectionRegistry,
    ) -> None:
        self._host, _, port = listen.rpartition(":")
        self._requested_port = int(port)
        self._backend_port = backend_port
        self._connections = connections
        self._context = _context(cert_file, key_file, client_ca_file)
        self._server: asyncio.Server | None = None
        self._relays: set[_Relay] = set()
        self.port = 0

    async def start(self) -> None:
        """Start accepting TLS connections."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Relay(self), self._host, self._requested_port
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        _log.info("TLS admin listener ready", address=f"{self._host}:{self.port}")

    async def stop(self) -> None:
        """Stop accepting and close every relayed connection."""
        if self._server is not None:
            self._server.close()
            for relay in list(self._relays):
                relay.close()
            await self._server.wait_closed()
            self._server = None


class _Relay(asyncio.Protocol):
    """One client connection: TLS in memory (pyOpenSSL BIOs), plaintext to the gRPC server."""

    def __init__(self, front: TlsFront) -> None:
        self._front = front
        self._tls = SSL.Connection(front._context, None)
        self._tls.set_accept_state()
        self._failures: list[str] = []
        self._tls.set_app_data(self._failures)
        self._client: asyncio.Transport | None = None
        self._backend: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._peer = ""
        self._handshaken = False
        self._closed = False
        self._timeout: asyncio.TimerHandle | None = None
        self._opening: asyncio.Task[None] | None = None  # held: the loop keeps only weak refs

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client = transport  # type: ignore[assignment]  # a stream server's is a Transport
        self._front._relays.add(self)
        # A client that never finishes the handshake must not hold the connection forever.
        self._timeout = asyncio.get_running_loop().call_later(_HANDSHAKE_TIMEOUT_S, self.close)

    def data_received(self, data: bytes) -> None:
        self._tls.bio_write(data)
        try:
            if not self._handshaken:
                try:
                    self._tls.do_handshake()
                except SSL.WantReadError:
                    self._flush()
                    return
                self._handshaken = True
                if self._timeout is not None:
                    self._timeout.cancel()
                self._opening = asyncio.get_running_loop().create_task(self._open_backend())
            self._read_plaintext()
        except SSL.Error as exc:
            _log.info("TLS admin connection failed", error=str(exc))
            self._flush()
            self.close()
            return
        self._flush()

    def _read_plaintext(self) -> None:
        while True:
            try:
                plain = self._tls.recv(_CHUNK)
            except SSL.WantReadError:
                return
            except SSL.ZeroReturnError:
                self.close()
                return
            if self._backend is not None:
                self._backend.write(plain)
            else:
                self._pending.append(plain)

    async def _open_backend(self) -> None:
        certificate = _peer_certificate(self._tls, self._failures)
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _Backend(self), "127.0.0.1", self._front._backend_port
            )
        except OSError as exc:
            _log.warning("TLS admin listener cannot reach the gRPC server", error=str(exc))
            self.close()
            return
        if self._closed:
            transport.close()
            return
        host, port = transport.get_extra_info("sockname")[:2]
        self._peer = f"ipv4:{host}:{port}"
        # Registered before the first byte is relayed: no call can arrive before its identity.
        self._front._connections.register(self._peer, certificate)
        self._backend = transport
        for chunk in self._pending:
            transport.write(chunk)
        self._pending.clear()

    def from_backend(self, data: bytes) -> None:
        """Encrypt bytes the gRPC server sent and pass them to the client."""
        if self._closed:
            return
        try:
            self._tls.sendall(data)
        except SSL.Error:
            self.close()
            return
        self._flush()

    def _flush(self) -> None:
        while self._client is not None:
            try:
                out = self._tls.bio_read(_CHUNK)
            except SSL.WantReadError:
                return
            if not out:
                return
            self._client.write(out)

    def close(self) -> None:
        """Close both sides (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._timeout is not None:
            self._timeout.cancel()
        if self._peer:
            self._front._connections.forget(self._peer)
        if self._backend is not None:
            self._backend.close()
        if self._client is not None:
            self._client.close()
        self._front._relays.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()


class _Backend(asyncio.Protocol):
    def __init__(self, relay: _Relay) -> None:
        self._relay = relay

    def data_received(self, data: bytes) -> None:
        self._relay.from_backend(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.close()


def _context(cert_file: str, key_file: str, client_ca_file: str | None) -> SSL.Context:
    context = SSL.Context(SSL.TLS_SERVER_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    try:
        context.use_certificate_chain_file(cert_file)
        context.use_privatekey_file(key_file)
        context.check_privatekey()
        if client_ca_file:
            context.load_verify_locations(client_ca_file)
    except (SSL.Error, OSError, ValueError) as exc:
        raise ConfigError("policy.admin.tls", f"cannot load the TLS files: {exc}") from exc
    if client_ca_file:
        context.set_verify(SSL.VERIFY_PEER, _record_verdict)
    # gRPC speaks HTTP/2 and its clients insist on ALPN "h2".
    context.set_alpn_select_callback(
        lambda _conn, protos: b"h2" if b"h2" in protos else SSL.NO_OVERLAPPING_PROTOCOLS
    )
    return context


def _record_verdict(
    connection: SSL.Connection, _cert: Any, errnum: int, depth: int, ok: int
) -> bool:
    """Keep OpenSSL's complaint about the client chain; never abort the handshake on it."""
    if not ok:
        failures = connection.get_app_data()
        if isinstance(failures, list):
            failures.append(f"{_verify_error(errnum)} (chain depth {depth})")
    return True


def _peer_certificate(connection: SSL.Connection, failures: list[str]) -> PeerCertificate | None:
    cert = connection.get_peer_certificate(as_cryptography=True)
    if cert is None:
        return None
    sans: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [f"DNS:{n}" for n in names.get_values_for_type(x509.DNSName)]
        sans += [f"URI:{n}" for n in names.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [f"email:{n}" for n in names.get_values_for_type(x509.RFC822Name)]
        sans += [f"IP:{n}" for n in names.get_values_for_type(x509.IPAddress)]
    problem = "; ".join(dict.fromkeys(failures))
    return PeerCertificate(cert.subject.rfc4514_string(), tuple(sans), problem)


def _verify_error(errnum: int) -> str:
    try:
        from OpenSSL._util import ffi, lib  # noqa: PLC0415 - the one readable source of the text

        text = ffi.string(lib.X509_verify_cert_error_string(errnum))
        return text.decode() if isinstance(text, bytes) else str(text)
    except (ImportError, AttributeError):
        return _VERIFY_ERRORS.get(errnum, f"certificate verification error {errnum}")

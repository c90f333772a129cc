"""Who is calling the admin API: a client certificate (via the TLS admin listener) or a token.

Tokens are configured hashed (``sha256`` hex or ``bcrypt``), never in plaintext; a presented token
is compared in constant time. bcrypt is slow on purpose (~0.1-0.3 s a check), so it runs on a small
thread pool of its own, never on the event loop, and a verified token is remembered (by its sha256)
for :data:`BCRYPT_CACHE_S` so a caller's repeated calls pay it once.

Certificates are verified by OpenSSL against the client CA during the handshake, but the verdict
is only recorded there (see ``tls_front``) so that a refused certificate still reaches the API and
is answered UNAUTHENTICATED and audited here.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sidecar.config import AdminToken
from sidecar.errors import Unauthenticated

__all__ = [
    "BCRYPT_CACHE_S",
    "Authenticator",
    "Caller",
    "CallerUnknown",
    "ConnectionRegistry",
    "PeerCertificate",
    "hash_token",
]


BCRYPT_CACHE_S = 60.0  # how long a bcrypt-verified token is trusted without checking again
_BCRYPT_CACHE_ENTRIES = 256
_BCRYPT_THREADS = 2  # bounds the CPU a flood of unknown tokens can take from everything else


def _checkpw(token: bytes, hashed: bytes) -> bool:
    import bcrypt  # noqa: PLC0415 - only bcrypt-hashed tokens need it

    return bool(bcrypt.checkpw(token, hashed))


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated admin caller: ``subject`` for the audit log, ``names`` for role bindings."""

    subject: str
    names: tuple[str, ...]
    method: str  # "mtls" | "token"

    def to_input(self) -> dict[str, Any]:
        """Return the ``input.caller`` object of a ``data.system.authz`` query."""
        return {"subject": self.subject, "names": list(self.names), "method": self.method}


class CallerUnknown(Unauthenticated):
    """Authentication failed; ``actor`` is what the audit log records as the (claimed) caller."""

    def __init__(self, actor: str, problem: str) -> None:
        super().__init__(problem)
        self.actor = actor


def hash_token(token: str) -> str:
    """Return the ``sha256`` hex a token is configured with (``admin hash-token`` prints it)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """A client certificate seen on a TLS admin connection, with OpenSSL's verdict on it."""

    subject: str
    sans: tuple[str, ...]
    problem: str  # "" when it verified against the client CA

    @property
    def names(self) -> tuple[str, ...]:
        """Return every name a binding may use: the subject DN, then each SAN."""
        return (self.subject, *self.sans)


class ConnectionRegistry:
    """Maps the sidecar-side address of each TLS-terminated connection to its client certificate.

    The TLS front registers a connection before it forwards a single byte, and forgets it before
    closing, so a gRPC peer address found here is exactly one the front opened.
    """

    def __init__(self) -> None:
        self._peers: dict[str, PeerCertificate | None] = {}
        self._lock = threading.Lock()

    def register(self, peer: str, certificate: PeerCertificate | None) -> None:
        """Record the connection ``peer`` (``ipv4:127.0.0.1:PORT``) and its certificate, if any."""
        with self._lock:
            self._peers[peer] = certificate

    def forget(self, peer: str) -> None:
        """Drop a closed connection."""
        with self._lock:
            self._peers.pop(peer, None)

    def lookup(self, peer: str) -> tuple[bool, PeerCertificate | None]:
        """Return (came through the TLS front, its client certificate or None)."""
        with self._lock:
            if peer in self._peers:
                return True, self._peers[peer]
        return False, None


class Authenticator:
    """Turns a call's peer address and bearer token into a :class:`Caller`, or CallerUnknown."""

    def __init__(
        self,
        tokens: Sequence[AdminToken],
        connections: ConnectionRegistry | None,
        *,
        require_tls: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tuple(tokens)
        self._connections = connections
        self._require_tls = require_tls
        self._clock = clock
        # sha256 of a bcrypt-verified token -> (its entry, verified at); oldest first.
        self._verified: OrderedDict[str, tuple[AdminToken, float]] = OrderedDict()
        self._bcrypt_pool: ThreadPoolExecutor | None = None

    async def authenticate(
        self, peer: str, bearer: str | None, *, now: datetime | None = None
    ) -> Caller:
        """Identify the caller: certificate first, then token; CallerUnknown names the problem."""
        via_tls, certificate = (
            self._connections.lookup(peer) if self._connections else (False, None)
        )
        if self._require_tls and not via_tls:
            raise CallerUnknown(
                f"peer:{peer}",
                "admin calls must come through the TLS admin listener (policy.admin.listen)",
            )
        if certificate is not None:
            if certificate.problem:
                raise CallerUnknown(
                    certificate.subject,
                    f"client certificate {certificate.subject!r} refused: {certificate.problem}",
                )
            return Caller(certificate.subject, certificate.names, "mtls")
        if bearer:
            return await self._token_caller(bearer, now or datetime.now(UTC))
        raise CallerUnknown(
            f"peer:{peer}",
            "no credentials: present a client certificate or an 'authorization: Bearer' token",
        )

    async def _token_caller(self, token: str, now: datetime) -> Caller:
        digest = hash_token(token)
        entry = await self._token_entry(token, digest)
        if entry is None:
            # Never the token itself: a short hash prefix lets operators correlate attempts.
            raise CallerUnknown(
                f"token:unknown-{digest[:8]}", "unknown bearer token (not in policy.admin.tokens)"
            )
        subject = f"token:{entry.subject}"
        if entry.expires_at is not None and now >= entry.expires_at:
            expired = entry.expires_at.isoformat().replace("+00:00", "Z")
            raise CallerUnknown(subject, f"bearer token of {subject} expired at {expired}")
        return Caller(subject, (subject,), "token")

    async def _token_entry(self, token: str, digest: str) -> AdminToken | None:
        """Return the configured entry ``token`` is, or None; bcrypt checks run off the loop."""
        for entry in self._tokens:
            if entry.sha256 is not None and hmac.compare_digest(entry.sha256, digest):
                return entry
        hashed = [entry for entry in self._tokens if entry.bcrypt is not None]
        if not hashed:
            return None
        now = self._clock()
        cached = self._verified.get(digest)
        if cached is not None and now - cached[1] <= BCRYPT_CACHE_S:
            return cached[0]
        if self._bcrypt_pool is None:
            self._bcrypt_pool = ThreadPoolExecutor(_BCRYPT_THREADS, thread_name_prefix="bcrypt")
        found = await asyncio.get_running_loop().run_in_executor(
            self._bcrypt_pool, _bcrypt_match, hashed, token
        )
        if found is not None:
            self._verified[digest] = (found, now)
            self._verified.move_to_end(digest)
            while len(self._verified) > _BCRYPT_CACHE_ENTRIES:
                self._verified.popitem(last=False)
        return found


def _bcrypt_match(entries: Sequence[AdminToken], token: str) -> AdminToken | None:
    """Return the bcrypt-hashed entry ``token`` matches, or None (runs in a worker thread)."""
    raw = token.encode()
    for entry in entries:
        if entry.bcrypt is not None and _checkpw(raw, entry.bcrypt.encode()):
            return entry
    return None

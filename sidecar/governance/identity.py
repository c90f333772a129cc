"""Who is calling: a client certificate, a bearer token, or the unix socket the call came through.

Tokens are configured hashed (``sha256`` hex or ``bcrypt``), never in plaintext; a presented token
is compared in constant time. bcrypt is slow on purpose (~0.1-0.3 s a check), so it runs on a small
thread pool of its own, never on the event loop, and a verified token is remembered (by its sha256)
for :data:`BCRYPT_CACHE_S` so a caller's repeated calls pay it once.

Certificates are verified by gRPC's own TLS (``ssl_server_credentials`` with client auth) during
the handshake: a certificate the client CA did not sign, or an expired one, never gets a
connection. The certificate of a call is read from that connection's auth context, so it belongs
to the connection itself — not to an address another local process could take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cryptography import x509

from sidecar.config import AdminToken
from sidecar.errors import Unauthenticated

__all__ = [
    "BCRYPT_CACHE_S",
    "Authenticator",
    "Caller",
    "CallerUnknown",
    "Credentials",
    "PeerCertificate",
    "certificate_from_pem",
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
    """An authenticated caller: ``subject`` for the audit log, ``names`` for role bindings."""

    subject: str
    names: tuple[str, ...]
    method: str  # "mtls" | "token" | "unix"

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
    """A client certificate gRPC's TLS verified against the client CA for this connection."""

    subject: str
    sans: tuple[str, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Return every name a binding may use: the subject DN, then each SAN."""
        return (self.subject, *self.sans)


def certificate_from_pem(pem: bytes) -> PeerCertificate:
    """Return the subject (RFC 4514) and typed SANs (``DNS:``, ``URI:``, ``email:``, ``IP:``)."""
    cert = x509.load_pem_x509_certificate(pem)
    sans: list[str] = []
    with contextlib.suppress(x509.ExtensionNotFound):
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans += [f"DNS:{n}" for n in names.get_values_for_type(x509.DNSName)]
        sans += [f"URI:{n}" for n in names.get_values_for_type(x509.UniformResourceIdentifier)]
        sans += [f"email:{n}" for n in names.get_values_for_type(x509.RFC822Name)]
        sans += [f"IP:{n}" for n in names.get_values_for_type(x509.IPAddress)]
    return PeerCertificate(cert.subject.rfc4514_string(), tuple(sans))


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a call presented, as its listener saw it (filled by the gRPC layer, read here).

    ``via_tls``: it came through a TLS listener that verified ``certificate`` (None: no client
    certificate). ``bound``: the subject configured for the unix socket it came through.
    """

    peer: str
    bearer: str | None
    certificate: PeerCertificate | None = None
    via_tls: bool = False
    bound: str | None = None


class Authenticator:
    """Turns what a call presented into a :class:`Caller`, or CallerUnknown naming the problem.

    A bearer token, when presented, names the caller (the certificate then only secured the
    connection); else the client certificate; else the unix socket's bound subject.
    """

    def __init__(
        self,
        tokens: Sequence[AdminToken],
        tokens_key: str | None = None,
        *,
        require_tls: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tokens = tuple(tokens)
        self._tokens_key = tokens_key or "policy.admin.tokens"
        self._require_tls = require_tls
        self._clock = clock
        # sha256 of a bcrypt-verified token -> (its entry, verified at); oldest first.
        self._verified: OrderedDict[str, tuple[AdminToken, float]] = OrderedDict()
        self._bcrypt_pool: ThreadPoolExecutor | None = None

    async def authenticate(
        self,
        peer: str | Credentials,
        bearer: str | None = None,
        *,
        now: datetime | None = None,
    ) -> Caller:
        """Identify the caller of ``peer`` (or full :class:`Credentials`) presenting ``bearer``."""
        given = peer if isinstance(peer, Credentials) else Credentials(peer, bearer)
        if self._require_tls and not given.via_tls:
            raise CallerUnknown(
                f"peer:{given.peer}",
                "admin calls must come through the TLS admin listener (policy.admin.listen)",
            )
        if given.bearer:
            return await self._token_caller(given.bearer, now or datetime.now(UTC))
        if given.certificate is not None:
            return Caller(given.certificate.subject, given.certificate.names, "mtls")
        if given.bound:
            return Caller(given.bound, (given.bound,), "unix")
        raise CallerUnknown(
            f"peer:{given.peer}",
            "no credentials: present a client certificate or an 'authorization: Bearer' token",
        )

    def is_cheap(self, credentials: Credentials) -> bool:
        """Whether checking ``credentials`` needs no bcrypt work (no token, a sha256-hashed
        one, or a bcrypt-hashed one verified recently): what a throttled peer may still try."""
        if not credentials.bearer:
            return True
        digest = hash_token(credentials.bearer)
        if any(
            e.sha256 is not None and hmac.compare_digest(e.sha256, digest) for e in self._tokens
        ):
            return True
        if all(entry.bcrypt is None for entry in self._tokens):
            return True
        cached = self._verified.get(digest)
        return cached is not None and self._clock() - cached[1] <= BCRYPT_CACHE_S

    async def _token_caller(self, token: str, now: datetime) -> Caller:
        digest = hash_token(token)
        entry = await self._token_entry(token, digest)
        if entry is None:
            # Never the token itself: a short hash prefix lets operators correlate attempts.
            raise CallerUnknown(
                f"token:unknown-{digest[:8]}", f"unknown bearer token (not in {self._tokens_key})"
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

"""Sealed requests: what the store keeps of a request that states facts the record mask hides.

A deferral keeps its request so the image can be decided again later (a destination came back,
OPA answered again). When that request states a masked fact — a customer id the policy matches
against the encrypted allowlist — the stored copy is an envelope under the sensitive-data key
(sidecar.sensitive.envelope), so a dump of the database or a PostgreSQL backup shows no secret,
and only a sidecar holding the key can decide it again.

Stored form: ``sealed:v1:`` followed by the envelope, base64url. The envelope is bound to the
name ``deferred-request``: an envelope of sensitive policy data cannot be replayed as a request.
"""

from __future__ import annotations

import asyncio
import base64
import binascii

from sidecar.errors import SensitiveDataError
from sidecar.sensitive.envelope import Envelope, open_envelope, seal
from sidecar.typing import KeyEncryptionKey

__all__ = ["SEALED_PREFIX", "EnvelopeSealer", "is_sealed"]

SEALED_PREFIX = "sealed:v1:"
_NAME = "deferred-request"
_WHERE = "a stored request"


def is_sealed(stored: str) -> bool:
    """Whether ``stored`` is a sealed request (else it is the request's JSON)."""
    return stored.startswith(SEALED_PREFIX)


class EnvelopeSealer:
    """Seals request JSON under the sensitive-data key before it is stored, and opens it again.

    A KMS key makes a network call per seal and per open (a fresh data key each): both run in a
    thread, never on the event loop.
    """

    def __init__(self, kek: KeyEncryptionKey) -> None:
        self._kek = kek

    def __repr__(self) -> str:
        return f"EnvelopeSealer({self._kek!r})"

    async def seal(self, text: str) -> str:
        """Return ``text`` sealed (idempotent: a sealed text is returned unchanged)."""
        if is_sealed(text):
            return text
        envelope = await asyncio.to_thread(seal, text, self._kek, _NAME)
        return SEALED_PREFIX + base64.urlsafe_b64encode(envelope.to_bytes()).decode()

    async def open(self, stored: str) -> str:
        """Return the request JSON of ``stored`` (a plain one unchanged); SensitiveDataError for
        a wrong key or tampering."""
        if not is_sealed(stored):
            return stored
        try:
            raw = base64.urlsafe_b64decode(stored.removeprefix(SEALED_PREFIX).encode())
        except (binascii.Error, ValueError):
            raise SensitiveDataError(_WHERE, "tampered: the sealed form is not base64") from None
        envelope = Envelope.parse(raw, _WHERE)
        text = await asyncio.to_thread(open_envelope, envelope, self._kek, _WHERE, name=_NAME)
        if not isinstance(text, str):
            raise SensitiveDataError(_WHERE, "tampered: the sealed content is not a request")
        return text

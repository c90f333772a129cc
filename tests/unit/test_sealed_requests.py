"""Sealed deferred requests: no fact in the clear, opened only with the same key, tamper-evident."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from sidecar.errors import SensitiveDataError
from sidecar.sensitive import SEALED_PREFIX, EnvelopeSealer, FileKey, generate_key_file, seal

SECRET = "cust-7f3e-secret"
REQUEST = '{"image":{"labels":{"customer-id":"' + SECRET + '"}}}'


def _sealer(tmp_path: Path, name: str = "kek.key") -> EnvelopeSealer:
    generate_key_file(tmp_path / name)
    return EnvelopeSealer(FileKey(tmp_path / name))


async def test_a_sealed_request_hides_its_facts_and_opens_to_the_same_text(
    tmp_path: Path,
) -> None:
    sealer = _sealer(tmp_path)
    stored = await sealer.seal(REQUEST)
    assert stored.startswith(SEALED_PREFIX)
    assert SECRET not in stored and SECRET not in base64.urlsafe_b64decode(stored[10:]).decode()
    assert await sealer.open(stored) == REQUEST
    assert await sealer.seal(stored) == stored  # sealing twice does not nest
    assert await sealer.open(REQUEST) == REQUEST  # rows stored before sealing existed


async def test_another_key_cannot_open_it(tmp_path: Path) -> None:
    stored = await _sealer(tmp_path, "a.key").seal(REQUEST)
    with pytest.raises(SensitiveDataError):
        await _sealer(tmp_path, "b.key").open(stored)


async def test_a_tampered_or_truncated_sealed_request_is_refused(tmp_path: Path) -> None:
    sealer = _sealer(tmp_path)
    stored = await sealer.seal(REQUEST)
    raw = bytearray(base64.urlsafe_b64decode(stored.removeprefix(SEALED_PREFIX)))
    raw[raw.index(b'"ciphertext": "') + 16] ^= 1  # one base64 character of the ciphertext
    forged = SEALED_PREFIX + base64.urlsafe_b64encode(bytes(raw)).decode()
    for bad in (forged, stored[:-20], SEALED_PREFIX + "!!not base64!!"):
        with pytest.raises(SensitiveDataError):
            await sealer.open(bad)


async def test_sensitive_policy_data_sealed_with_the_key_cannot_pass_as_a_request(
    tmp_path: Path,
) -> None:
    # Someone who can write the store plants an envelope of the encrypted allowlist: refused
    # (the envelope is bound to its document name), never decrypted into a decision's input.
    generate_key_file(tmp_path / "kek.key")
    key = FileKey(tmp_path / "kek.key")
    planted = (
        SEALED_PREFIX
        + base64.urlsafe_b64encode(seal(REQUEST, key, "customers").to_bytes()).decode()
    )
    with pytest.raises(SensitiveDataError, match="swapped"):
        await EnvelopeSealer(key).open(planted)

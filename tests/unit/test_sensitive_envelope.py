"""Envelope encryption with a local key file: round trip, wrong key, tampering, bad files."""

from __future__ import annotations

import base64
import json
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sidecar.errors import ConfigError, SensitiveDataError
from sidecar.sensitive import Envelope, FileKey, generate_key_file, open_envelope, seal

SECRET = "customer-secret-4711"
DOCUMENT = {"allowlist": {"prod-us": [SECRET, "other-customer"]}, "rate": 0.013}


@pytest.fixture
def key(tmp_path: Path) -> FileKey:
    generate_key_file(tmp_path / "kek.key")
    return FileKey(tmp_path / "kek.key")


def _sealed(key: FileKey) -> dict[str, Any]:
    return json.loads(seal(DOCUMENT, key).to_bytes())


def _open(doc: dict[str, Any], key: FileKey) -> Any:
    return open_envelope(Envelope.parse(json.dumps(doc).encode(), "f.json"), key, "f.json")


def test_round_trip_and_the_file_holds_no_plaintext(key: FileKey) -> None:
    raw = seal(DOCUMENT, key).to_bytes()
    assert SECRET.encode() not in raw and b"allowlist" not in raw and b"0.013" not in raw
    assert open_envelope(Envelope.parse(raw, "f.json"), key, "f.json") == DOCUMENT
    # A fresh data key and nonce each time: equal plaintexts do not give equal files.
    assert seal(DOCUMENT, key).to_bytes() != raw


def test_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "k.key"
    fingerprint = generate_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FileKey(path).fingerprint == fingerprint
    assert base64.b64decode(path.read_text().strip()) not in fingerprint.encode()
    with pytest.raises(FileExistsError):
        generate_key_file(path)


def test_wrong_key_is_named_with_both_fingerprints(key: FileKey, tmp_path: Path) -> None:
    generate_key_file(tmp_path / "other.key")
    other = FileKey(tmp_path / "other.key")
    with pytest.raises(SensitiveDataError) as err:
        _open(_sealed(key), other)
    assert err.value.problem.startswith("wrong key")
    assert key.fingerprint in err.value.message and other.fingerprint in err.value.message
    assert isinstance(err.value, ConfigError)  # the CLI and serve exit 2 on it


def _flip(field: str) -> Callable[[dict[str, Any]], None]:
    def edit(doc: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(doc[field]))
        raw[len(raw) // 2] ^= 0x01
        doc[field] = base64.b64encode(bytes(raw)).decode()

    return edit


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (_flip("ciphertext"), "tampered: the ciphertext"),
        (_flip("nonce"), "tampered: the ciphertext"),
        (_flip("encrypted_key"), "tampered: the wrapped data key"),
    ],
)
def test_tampering_is_detected(
    key: FileKey, edit: Callable[[dict[str, Any]], None], problem: str
) -> None:
    doc = _sealed(key)
    edit(doc)
    with pytest.raises(SensitiveDataError, match=problem):
        _open(doc, key)


def test_edited_header_fails_authentication(key: FileKey, tmp_path: Path) -> None:
    # Pretending the file names another key type is caught before decryption...
    doc = _sealed(key)
    doc["kek"] = {"type": "aws-kms", "key_id": "arn:aws:kms:us-east-1:1:key/x"}
    with pytest.raises(SensitiveDataError, match="wrong key: encrypted with KMS key"):
        _open(doc, key)
    # ...and an extra header field, which the key check ignores, fails the AES-GCM tag.
    doc = _sealed(key)
    doc["kek"]["note"] = "edited"
    with pytest.raises(SensitiveDataError, match="tampered"):
        _open(doc, key)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"{not json", "not JSON"),
        (b'{"allowlist": []}', "not an encrypted data file"),
        (b'{"format": "policy-sidecar.sensitive-data/v1", "kek": {}}', "lacks encrypted_key"),
    ],
)
def test_plaintext_or_broken_file_is_refused(raw: bytes, problem: str) -> None:
    with pytest.raises(SensitiveDataError, match=problem):
        Envelope.parse(raw, "f.json")


def test_bad_base64_is_refused(key: FileKey) -> None:
    doc = _sealed(key)
    doc["ciphertext"] = "***"
    with pytest.raises(SensitiveDataError, match="not base64"):
        _open(doc, key)


@pytest.mark.parametrize("content", ["", "c2hvcnQ=", "not base64 at all!"])
def test_malformed_key_file_is_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "bad.key").write_text(content)
    with pytest.raises(SensitiveDataError, match="32 random bytes in base64"):
        FileKey(tmp_path / "bad.key")


def test_key_repr_never_shows_the_key(key: FileKey, tmp_path: Path) -> None:
    material = (tmp_path / "kek.key").read_text().strip()
    assert material not in repr(key) and key.fingerprint in repr(key)

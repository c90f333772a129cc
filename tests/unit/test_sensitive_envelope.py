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
from sidecar.sensitive.envelope import FORMAT

SECRET = "customer-secret-4711"
DOCUMENT = {"allowlist": {"prod-us": [SECRET, "other-customer"]}, "rate": 0.013}


@pytest.fixture
def key(tmp_path: Path) -> FileKey:
    generate_key_file(tmp_path / "kek.key")
    return FileKey(tmp_path / "kek.key")


def _sealed(key: FileKey, name: str = "customers") -> dict[str, Any]:
    return json.loads(seal(DOCUMENT, key, name).to_bytes())


def _open(doc: dict[str, Any], key: FileKey, name: str | None = "customers") -> Any:
    envelope = Envelope.parse(json.dumps(doc).encode(), "f.json")
    return open_envelope(envelope, key, "f.json", name=name)


def test_round_trip_and_the_file_holds_no_plaintext(key: FileKey) -> None:
    raw = seal(DOCUMENT, key, "customers").to_bytes()
    assert SECRET.encode() not in raw and b"allowlist" not in raw and b"0.013" not in raw
    envelope = Envelope.parse(raw, "f.json")
    assert open_envelope(envelope, key, "f.json", name="customers") == DOCUMENT
    assert (envelope.document, json.loads(raw)["format"]) == ("customers", FORMAT)
    # A fresh data key and nonce each time: equal plaintexts do not give equal files.
    assert seal(DOCUMENT, key, "customers").to_bytes() != raw


def test_a_file_of_another_document_is_refused(key: FileKey) -> None:
    # Regression (issue 15): the document name is bound into the AES-GCM associated data, so
    # document A's file cannot be served as document B.
    doc = _sealed(key, "partners")
    with pytest.raises(
        SensitiveDataError, match=r"swapped: .* for document 'partners', not 'customers'"
    ):
        _open(doc, key, "customers")
    # Rewriting the header's name to match does not help: the tag covers the sealed name.
    doc["document"] = "customers"
    with pytest.raises(SensitiveDataError, match="tampered"):
        _open(doc, key, "customers")
    # Nor does back-dating (or post-dating) the authenticated sealing time.
    doc = _sealed(key)
    doc["sealed_at"] = "2020-01-01T00:00:00Z"
    with pytest.raises(SensitiveDataError, match="tampered"):
        _open(doc, key)
    # Without an expected name (``data check FILE``) the file's own, authenticated name is used.
    assert _open(_sealed(key, "partners"), key, None) == DOCUMENT


def test_a_version_1_file_is_refused_with_how_to_re_encrypt(key: FileKey) -> None:
    doc = _sealed(key)
    doc["format"] = "policy-sidecar.sensitive-data/v1"
    del doc["document"], doc["sealed_at"]
    with pytest.raises(SensitiveDataError) as err:
        _open(doc, key)
    assert "no longer accepted" in err.value.problem
    assert "policy-sidecar data encrypt --name" in err.value.problem


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
        (b'{"format": "policy-sidecar.sensitive-data/v2", "kek": {}}', "lacks document"),
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

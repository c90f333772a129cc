"""Decrypted sensitive data stays out of reprs, and plain HTTP off-host is flagged."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sidecar.config._sensitive import SensitiveDataSettings
from sidecar.errors import ConfigError
from sidecar.sensitive import FileKey, generate_key_file, load_sensitive_data, seal
from sidecar.sensitive.runtime import _private_path

SECRET = "customer-secret-4711"


def test_loaded_data_shows_names_and_digest_never_values(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "k.key")
    key = FileKey(tmp_path / "k.key")
    (tmp_path / "a.enc").write_bytes(
        seal({"allowlist": {"r": [SECRET]}}, key, "customers").to_bytes()
    )
    (tmp_path / "b.enc").write_bytes(
        seal({"rate": "gold-contract-77"}, key, "costs/contracts").to_bytes()
    )
    settings = SensitiveDataSettings(
        documents={
            "customers": str(tmp_path / "a.enc"),
            "costs/contracts": str(tmp_path / "b.enc"),
        },
        key_file=str(tmp_path / "k.key"),
    )
    data = load_sensitive_data(settings)
    assert data is not None
    assert data.document() == {
        "customers": {"allowlist": {"r": [SECRET]}},
        "costs": {"contracts": {"rate": "gold-contract-77"}},
    }
    assert data.secrets == {SECRET, "gold-contract-77"}
    assert data.roots == {"customers", "costs"}
    assert SECRET not in repr(data) and "customers" in repr(data)
    assert load_sensitive_data(SensitiveDataSettings()) is None


def test_swapped_documents_are_refused_naming_both(tmp_path: Path) -> None:
    # Regression (issue 15): each file is bound to its document name, so serving document A's
    # ciphertext as document B (a swapped mount, a copied file) stops startup.
    generate_key_file(tmp_path / "k.key")
    key = FileKey(tmp_path / "k.key")
    (tmp_path / "a.enc").write_bytes(
        seal({"allowlist": {"r": [SECRET]}}, key, "customers").to_bytes()
    )
    (tmp_path / "b.enc").write_bytes(seal({"allowlist": {"r": ["x"]}}, key, "partners").to_bytes())
    settings = SensitiveDataSettings(
        documents={"customers": str(tmp_path / "b.enc"), "partners": str(tmp_path / "a.enc")},
        key_file=str(tmp_path / "k.key"),
    )
    with pytest.raises(ConfigError) as err:
        load_sensitive_data(settings)
    assert "policy.sensitive_data.documents.customers" in err.value.message
    assert "encrypted for document 'partners', not 'customers'" in err.value.message
    assert SECRET not in err.value.message


def test_a_file_sealed_before_not_before_is_refused_as_a_rollback(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "k.key")
    key = FileKey(tmp_path / "k.key")
    (tmp_path / "a.enc").write_bytes(seal({"r": [SECRET]}, key, "customers").to_bytes())
    settings = SensitiveDataSettings(
        documents={"customers": str(tmp_path / "a.enc")}, key_file=str(tmp_path / "k.key")
    )
    now = datetime.now(UTC)
    loaded = load_sensitive_data(replace(settings, not_before=now - timedelta(minutes=1)))
    assert loaded is not None and loaded.names == ("customers",)
    with pytest.raises(ConfigError) as err:
        load_sensitive_data(replace(settings, not_before=now + timedelta(minutes=1)))
    assert "before policy.sensitive_data.not_before" in err.value.message
    assert "data encrypt --name customers" in err.value.message


@pytest.mark.parametrize(
    ("url", "private"),
    [
        ("http://127.0.0.1:8181", True),
        ("http://localhost:8181", True),
        ("http://[::1]:8181", True),
        ("https://opa.internal:8181", True),
        ("http://opa.internal:8181", False),
        ("http://10.0.0.7:8181", False),
    ],
)
def test_plain_http_off_host_is_not_private(url: str, private: bool) -> None:
    assert _private_path(url) is private

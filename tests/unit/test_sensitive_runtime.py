"""Decrypted sensitive data stays out of reprs, and plain HTTP off-host is flagged."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config._sensitive import SensitiveDataSettings
from sidecar.sensitive import FileKey, generate_key_file, load_sensitive_data, seal
from sidecar.sensitive.runtime import _private_path

SECRET = "customer-secret-4711"


def test_loaded_data_shows_names_and_digest_never_values(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "k.key")
    key = FileKey(tmp_path / "k.key")
    (tmp_path / "a.enc").write_bytes(seal({"allowlist": {"r": [SECRET]}}, key).to_bytes())
    (tmp_path / "b.enc").write_bytes(seal({"rate": "gold-contract-77"}, key).to_bytes())
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

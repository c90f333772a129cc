"""``policy.admin``: tokens stored hashed, the TLS listener, the publish store; every refusal named."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sidecar.config import load_config
from sidecar.config._admin import AdminPublishSettings, AdminSettings, AdminTlsSettings, AdminToken
from sidecar.errors import ConfigError

SHA = hashlib.sha256(b"s3cret").hexdigest()
BCRYPT = "$2b$12$" + "a" * 53


def _load(tmp_path: Path, admin: str) -> AdminSettings:
    path = tmp_path / "sidecar.yaml"
    path.write_text(f"policy:\n  admin:\n{admin}", encoding="utf-8")
    return load_config(path).policy.admin


def test_defaults_are_the_documented_ones() -> None:
    assert load_config(None).policy.admin == AdminSettings(
        listen="",
        tls=None,
        require_tls=True,
        tokens=(),
        publish=AdminPublishSettings(to="", timeout_s=60.0),
        max_bundle_bytes=16 * 1024 * 1024,
        max_unpacked_bytes=64 * 1024 * 1024,
    )


def test_a_full_section_loads(tmp_path: Path) -> None:
    for name in ("server.pem", "server-key.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    admin = _load(
        tmp_path,
        "    listen: 127.0.0.1:9443\n"
        "    tls: {cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem}\n"
        f"    tokens:\n      - {{subject: ci-bot, sha256: 'sha256:{SHA.upper()}',"
        " expires_at: 2027-01-01T00:00:00Z}\n"
        f"      - {{subject: ops, bcrypt: '{BCRYPT}'}}\n"
        "    publish: {to: 's3://bundles/opa/replication.tar.gz', region: eu-west-1,"
        " timeout_s: 30s}\n"
        "    max_bundle_bytes: 1000\n",
    )
    assert admin.tls == AdminTlsSettings(
        str(tmp_path / "server.pem"), str(tmp_path / "server-key.pem"), str(tmp_path / "ca.pem")
    )
    assert admin.tokens == (
        AdminToken("ci-bot", SHA, None, datetime(2027, 1, 1, tzinfo=UTC)),
        AdminToken("ops", None, BCRYPT, None),
    )
    assert admin.publish.to == "s3://bundles/opa/replication.tar.gz"
    assert (admin.publish.region, admin.publish.timeout_s) == ("eu-west-1", 30.0)
    assert admin.max_bundle_bytes == 1000 and admin.listen == "127.0.0.1:9443"
    assert BCRYPT not in repr(admin)


@pytest.mark.parametrize(
    ("admin", "message"),
    [
        ("    tokens: [{subject: x, token: plain}]\n", "tokens are stored hashed"),
        ("    tokens: [{subject: x}]\n", "give exactly one of sha256 and bcrypt"),
        (f"    tokens: [{{subject: x, sha256: {SHA}, bcrypt: '{BCRYPT}'}}]\n", "exactly one of"),
        ("    tokens: [{subject: x, sha256: abc}]\n", "expected 64 hex digits"),
        ("    tokens: [{subject: x, bcrypt: nope}]\n", "expected a bcrypt hash"),
        (f"    tokens: [{{sha256: {SHA}}}]\n", "needs subject"),
        (f"    tokens: [{{subject: 'a b', sha256: {SHA}}}]\n", "use letters, digits"),
        (f"    tokens: [{{subject: x, sha256: {SHA}}}, {{subject: x, sha256: {SHA}}}]\n",
         "subject 'x' is given twice"),
        (f"    tokens: [{{subject: x, sha256: {SHA}, expires_at: soon}}]\n", "RFC 3339"),
        (f"    tokens: [{{subject: x, sha256: {SHA}, expires_at: '2027-01-01T00:00:00'}}]\n",
         "needs a time zone"),
        ("    listen: 127.0.0.1:9443\n", "listen needs tls"),
        ("    tls: {cert_file: a.pem, key_file: b.pem}\n", "does not exist"),
        ("    listen: nowhere\n", "expected HOST:PORT"),
        ("    publish: {to: 'ftp://x/y'}\n", "use s3://BUCKET/KEY"),
        ("    publish: {to: 'http://h/bundles/x', token: '${UNSET_ADMIN_TOKEN}'}\n", "not set"),
        ("    max_bundle_bytes: 0\n", "must be at least 1"),
        ("    lissen: x\n", "did you mean 'listen'"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_naming_the_key(tmp_path: Path, admin: str, message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, admin)
    assert "policy.admin" in refused.value.message
    assert message in refused.value.message

"""``policy.auth``: the authenticated data plane's listeners and tokens; the loopback-only default."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from sidecar.config import AuthSettings, AuthUnixSettings, load_config
from sidecar.config._admin import AdminToken
from sidecar.errors import ConfigError

SHA = hashlib.sha256(b"s3cret").hexdigest()


def _load(tmp_path: Path, policy: str) -> AuthSettings | None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(f"policy:\n{policy}", encoding="utf-8")
    return load_config(path).policy.auth


def test_absent_means_the_trusted_loopback_default() -> None:
    policy = load_config(None).policy
    assert policy.auth is None and not policy.allow_unauthenticated_listen
    assert policy.listen == "127.0.0.1:50051"


def test_a_full_section_loads(tmp_path: Path) -> None:
    for name in ("server.pem", "server-key.pem", "ca.pem"):
        (tmp_path / name).write_text("pem")
    auth = _load(
        tmp_path,
        "  listen: 0.0.0.0:50051\n"
        "  auth:\n"
        "    listen: 0.0.0.0:50052\n"
        "    tls: {cert_file: server.pem, key_file: server-key.pem, client_ca_file: ca.pem}\n"
        f"    tokens: [{{subject: repl, sha256: {SHA}}}]\n"
        "    unix: {path: 'unix:run/policy.sock', subject: replicator, mode: 0660}\n",
    )
    assert auth is not None
    assert auth.listen == "0.0.0.0:50052"
    assert auth.tls is not None and auth.tls.client_ca_file == str(tmp_path / "ca.pem")
    assert auth.tokens == (AdminToken("repl", SHA),)
    assert auth.unix == AuthUnixSettings(str(tmp_path / "run/policy.sock"), "replicator", "0660")
    assert auth.unix.file_mode == 0o660


@pytest.mark.parametrize(
    ("policy", "key", "message"),
    [
        ("  listen: 0.0.0.0:50051\n", "policy.listen", "is not loopback, and without policy.auth"),
        ("  listen: '[::]:50051'\n", "policy.listen", "is not loopback"),
        ("  auth: {}\n", "policy.auth", "identifies nobody"),
        ("  auth: {listen: 127.0.0.1:1}\n", "policy.auth", "listen needs tls"),
        ("  auth:\n    tls: {cert_file: a.pem, key_file: a.pem}\n    listen: 127.0.0.1:1\n",
         "policy.auth.tls", "does not exist"),
        ("  auth: {tokens: [{subject: x, token: plain}]}\n", "policy.auth.tokens", "stored hashed"),
        (f"  auth: {{tokens: [{{subject: x, sha256: {SHA}}}, {{subject: x, sha256: {SHA}}}]}}\n",
         "policy.auth.tokens", "subject 'x' is given twice"),
        ("  auth: {unix: {path: /tmp/s}}\n", "policy.auth.unix", "subject"),
        ("  auth: {unix: {path: /tmp/s, subject: r, mode: 0666}}\n", "policy.auth.unix.mode",
         "expected one of"),
        ("  auth: {unix: {path: '/tmp/" + "x" * 120 + "', subject: r}}\n", "policy.auth.unix.path",
         "at most 100 bytes"),
        ("  auth: {lisen: x}\n", "policy.auth", "did you mean 'listen'"),
    ],
)  # fmt: skip
def test_mistakes_are_refused_naming_the_key(
    tmp_path: Path, policy: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        _load(tmp_path, policy)
    assert key in str(refused.value) and message in str(refused.value)


def test_the_opt_out_accepts_an_unauthenticated_remote_listener(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text(
        "policy:\n  listen: 0.0.0.0:50051\n  allow_unauthenticated_listen: true\n", encoding="utf-8"
    )
    assert load_config(path).policy.listen == "0.0.0.0:50051"
    for loopback in ("127.0.0.1:1", "[::1]:1", "localhost:1", "127.0.0.2:1"):
        path.write_text(f"policy:\n  listen: '{loopback}'\n", encoding="utf-8")
        assert load_config(path).policy.listen == loopback

"""Registry auth without a network: challenges, credential sources, headers, TLS and endpoints."""

from __future__ import annotations

import base64
import datetime as dt
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from google.oauth2.credentials import Credentials
from yarl import URL

from sidecar.config._registries import AuthConfig, RegistryConfig, TlsConfig
from sidecar.errors import RegistryError
from sidecar.model.decision import RegistryFacts
from sidecar.oci import RegistryClient, parse_challenge
from sidecar.oci._auth import (
    Authenticator,
    EcrCredentials,
    GcpCredentials,
    StaticCredentials,
    credentials_for,
)
from sidecar.oci._http import (
    base_url,
    credentials_allowed,
    retry_after_seconds,
    same_origin,
    ssl_context,
)


def _registry(**kw: Any) -> RegistryConfig:
    return RegistryConfig(name="r", facts=RegistryFacts("r", "eu", "dev"), **kw)


def _decode(header: str | None) -> str:
    assert header is not None and header.startswith("Basic ")
    return base64.b64decode(header.removeprefix("Basic ")).decode()


def test_bearer_challenge_is_parsed() -> None:
    challenge = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/ubuntu:pull,push"'
    )
    assert challenge is not None and challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/ubuntu:pull,push",
    }
    basic = parse_challenge('Basic realm="test-registry"')
    assert basic is not None and basic.scheme == "basic"
    assert parse_challenge("") is None


@pytest.mark.parametrize(
    ("auth", "kind", "expected"),
    [
        (AuthConfig(), "generic", None),
        (AuthConfig(type="basic", username="u", password="p"), "generic", ("u", "p")),
        (AuthConfig(type="token", token="ghp_x"), "github", ("oauth2", "ghp_x")),
        (AuthConfig(type="token", username="deploy", token="t"), "gitlab", ("deploy", "t")),
    ],
)
async def test_static_credentials_follow_the_auth_type(
    auth: AuthConfig, kind: str, expected: tuple[str, str] | None
) -> None:
    source = credentials_for(_registry(type=kind, auth=auth))
    assert (await source.get() if source else None) == expected


@pytest.mark.parametrize("auth_type", ["aws", "ecr"])
def test_ecr_auth_types_use_ecr_tokens(auth_type: str) -> None:
    registry = _registry(type="ecr", region="us-east-1", auth=AuthConfig(type=auth_type))
    assert isinstance(credentials_for(registry), EcrCredentials)
    assert isinstance(credentials_for(_registry(type="ecr", region="us-east-1")), EcrCredentials)


async def test_gcp_credentials_present_the_access_token_as_oauth2accesstoken() -> None:
    expiry = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)
    google = Credentials(token="ya29.test-token", expiry=expiry)  # type: ignore[no-untyped-call]
    fetched: list[Any] = []

    async def no_exchange(
        realm: str, params: Mapping[str, Any], auth: str | None
    ) -> Mapping[str, Any]:
        fetched.append(realm)
        return {}

    auth = Authenticator("gcr", GcpCredentials("gcr", google), no_exchange)
    header = await auth.header(("repository:proj/app:pull",))
    assert _decode(header) == "oauth2accesstoken:ya29.test-token"
    assert fetched == []


async def test_expired_gcp_credentials_without_refresh_token_are_a_clear_error() -> None:
    expired = dt.datetime.now(dt.UTC).replace(tzinfo=None) - dt.timedelta(hours=1)
    old = Credentials(token="old", expiry=expired)  # type: ignore[no-untyped-call]
    source = GcpCredentials("gcr", old)
    with pytest.raises(RegistryError, match="gcr: GCP access token") as caught:
        await source.get()
    assert caught.value.status == 401 and not caught.value.transient


async def test_bearer_tokens_are_exchanged_once_per_scope_until_expiry() -> None:
    clock = [0.0]
    calls: list[tuple[str, Mapping[str, Any], str | None]] = []

    async def exchange(
        realm: str, params: Mapping[str, Any], auth: str | None
    ) -> Mapping[str, Any]:
        calls.append((realm, params, auth))
        return {"token": f"t{len(calls)}", "expires_in": 300}

    auth = Authenticator("hub", StaticCredentials("me", "pw"), exchange, clock=lambda: clock[0])
    assert _decode(await auth.header(())) == "me:pw"  # no challenge yet: try basic
    assert auth.learn('Bearer realm="https://auth/token",service="hub"')
    pull = ("repository:a:pull",)
    assert await auth.header(pull) == "Bearer t1"
    assert await auth.header(pull) == "Bearer t1"
    assert await auth.header(("repository:b:pull",)) == "Bearer t2"
    assert calls[0] == (
        "https://auth/token",
        {"scope": ["repository:a:pull"], "service": "hub"},
        calls[0][2],
    )
    assert _decode(calls[0][2]) == "me:pw"
    clock[0] += 300
    assert await auth.header(pull) == "Bearer t3"  # expired: exchanged again


def test_a_repeated_basic_refusal_is_not_retried() -> None:
    auth = Authenticator("r", StaticCredentials("u", "bad"), _never)
    assert auth.learn('Basic realm="x"')
    assert not auth.learn('Basic realm="x"')
    anonymous = Authenticator("r", None, _never)
    assert not anonymous.learn('Basic realm="x"')


async def _never(realm: str, params: Mapping[str, Any], auth: str | None) -> Mapping[str, Any]:
    raise AssertionError("no token exchange expected")


@pytest.mark.parametrize(
    ("registry", "url"),
    [
        (_registry(endpoint="http://127.0.0.1:5000/"), "http://127.0.0.1:5000"),
        (_registry(endpoint="harbor.example.com"), "https://harbor.example.com"),
        (
            _registry(type="ecr", region="eu-west-1", account_id="123"),
            "https://123.dkr.ecr.eu-west-1.amazonaws.com",
        ),
        (_registry(type="gcr", region="eu"), "https://eu.gcr.io"),
        (_registry(type="dockerhub"), "https://registry-1.docker.io"),
    ],
)
def test_endpoints_and_schemes(registry: RegistryConfig, url: str) -> None:
    assert base_url(registry) == url


def test_tls_settings(tmp_path: Path) -> None:
    assert ssl_context(_registry()) is True
    insecure = ssl_context(_registry(insecure=True))
    assert isinstance(insecure, ssl.SSLContext) and insecure.verify_mode == ssl.CERT_NONE
    skip = ssl_context(_registry(tls=TlsConfig(insecure_skip_verify=True)))
    assert isinstance(skip, ssl.SSLContext) and not skip.check_hostname
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(RegistryError, match=f"registry r: tls.ca_file {missing}: No such file"):
        ssl_context(_registry(tls=TlsConfig(ca_file=missing)))


async def test_unusable_tls_or_gcp_files_fail_that_registrys_requests_not_the_client(
    tmp_path: Path,
) -> None:
    missing = str(tmp_path / "ca.pem")
    # Built without error, as the sidecar builds every registry's client at startup.
    client = RegistryClient(_registry(endpoint="127.0.0.1:9", tls=TlsConfig(ca_file=missing)))
    try:
        with pytest.raises(RegistryError, match=f"tls.ca_file {missing}: No such file"):
            await client.blob_exists("app", "sha256:" + "0" * 64)
    finally:
        await client.close()
    key = str(tmp_path / "sa.json")
    gcp = credentials_for(_registry(type="gcr", auth=AuthConfig(credentials_file=key)))
    assert isinstance(gcp, GcpCredentials)
    with pytest.raises(RegistryError, match=f"registry r: auth: GCP credentials: .*{key}"):
        await gcp.get()


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("12") == 12.0
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    parsed = retry_after_seconds(soon.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    assert parsed is not None and 25 < parsed <= 30
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize(
    ("target", "insecure", "allowed"),
    [
        ("http://reg.local:5000/token", False, True),  # the configured origin itself
        ("HTTP://REG.LOCAL:5000/x", False, True),
        ("https://auth.docker.io/token", False, True),  # a token service elsewhere, over https
        ("http://auth.example.com/token", False, False),  # elsewhere over plain http
        ("http://reg.local:5001/token", False, False),  # another port is another origin
        ("https://reg.local:5000/token", False, True),
        ("http://auth.example.com/token", True, True),  # the operator accepted plain http
    ],
)
def test_credentials_go_only_to_the_registry_origin_or_https(
    target: str, insecure: bool, allowed: bool
) -> None:
    origin = URL(base_url(_registry(endpoint="http://reg.local:5000")))
    assert credentials_allowed(origin, URL(target), insecure=insecure) is allowed
    assert same_origin(URL("https://h:443/a"), URL("https://H"))

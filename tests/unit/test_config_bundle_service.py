"""``policy.bundle.service`` / ``policy.bundle.serve``: parsing, defaults, clear errors, OPA config."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from sidecar.bundles.pull import prepare_pull
from sidecar.config import Config, load_config
from sidecar.errors import ConfigError

_PEM = "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"
_AWS = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}


def _load(tmp_path: Path, bundle: str, extra: str = "") -> Config:
    (tmp_path / "verify.pem").write_text(_PEM)
    path = tmp_path / "sidecar.yaml"
    path.write_text(f"policy:\n  bundle:\n    verification_key: verify.pem\n{bundle}{extra}")
    return load_config(path)


def test_defaults_build_locally_and_serve_nothing() -> None:
    bundle = load_config(None).policy.bundle
    assert bundle.service is None
    assert not bundle.serve.enabled


def test_a_service_is_read_with_named_defaults(tmp_path: Path) -> None:
    config = _load(
        tmp_path, "    service:\n      url: s3://policy-bundles/opa/replication.tar.gz\n"
    )
    service = config.policy.bundle.service
    assert service is not None
    assert (service.store, service.credentials, service.persist) == ("s3", "environment", True)
    assert (service.min_delay_s, service.max_delay_s, service.long_poll_timeout_s) == (1, 2, 30)


def test_camel_case_and_every_key(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "    service:\n      url: gs://b/o.tar.gz\n      endpointUrl: http://127.0.0.1:4443/\n"
        "      credentials: none\n      minDelayS: 3\n      max_delay_s: 9\n"
        "      persist: false\n",
    )
    service = config.policy.bundle.service
    assert service is not None
    assert (service.store, service.endpoint_url, service.credentials) == (
        "gcs",
        "http://127.0.0.1:4443",
        "none",
    )
    assert (service.min_delay_s, service.max_delay_s, service.persist) == (3, 9, False)


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("      url: ftp://x/y\n", "policy.bundle.service.url: 'ftp://x/y': use s3://"),
        ("      url: http://h/other/x\n", "must end in /bundles/<name>"),
        ("      endpoint_url: http://x\n", "policy.bundle.service: needs url"),
        ("      url: s3://b/k\n      credentials: gcp_metadata\n", "is not one of environment"),
        ("      url: s3://b/k\n      token: t\n", "only an http bundle server takes a bearer"),
        ("      url: gs://b/k\n      min_delay_s: 5\n      max_delay_s: 2\n", "at least min_delay"),
        ("      url: gs://b/k\n      min_delay_s: 0\n", "must be at least 1"),
        ("      url: http://h/bundles/r\n      endpoint_url: http://e\n", "already its endpoint"),
        ("      url: http://h/bundles/r\n      token: ${NOT_SET_ANYWHERE}\n", "is not set"),
        ("      url: gs://b/k\n      polling: 1\n", "service.polling: unknown key"),
    ],
)
def test_bad_service_settings_name_the_key(tmp_path: Path, service: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "    service:\n" + service)
    assert message in err.value.message


def test_a_service_needs_the_verification_key(tmp_path: Path) -> None:
    path = tmp_path / "sidecar.yaml"
    path.write_text("policy:\n  bundle:\n    service: {url: 's3://b/k'}\n")
    with pytest.raises(ConfigError, match=r"needs policy\.bundle\.verification_key"):
        load_config(path)


def test_a_service_and_an_external_opa_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policy\.opa\.address names an external one"):
        _load(
            tmp_path,
            "    service: {url: 's3://b/k'}\n",
            "  opa: {address: 'http://127.0.0.1:8181'}\n",
        )


def test_serving_needs_an_upload_token(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"policy\.bundle\.serve: needs token"):
        _load(tmp_path, "    serve: {listen: '0.0.0.0:8282'}\n")
    with pytest.raises(ConfigError, match="expected HOST:PORT"):
        _load(tmp_path, "    serve: {listen: '8282', token: t}\n")
    config = _load(tmp_path, "    serve: {listen: '0.0.0.0:8282', token: t, dir: served}\n")
    serve = config.policy.bundle.serve
    assert (serve.enabled, serve.dir, serve.token) == (True, str(tmp_path / "served"), "t")


def test_the_rendered_opa_config_polls_the_store_and_verifies(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "    service:\n      url: s3://policy-bundles/opa/replication.tar.gz\n"
        "      endpoint_url: http://127.0.0.1:5000\n      region: eu-west-1\n",
    )
    pull = prepare_pull(config.policy.bundle, tmp_path / "state", _AWS)
    rendered = yaml.safe_load(pull.config_file.read_text())
    assert rendered["services"]["bundles"] == {
        "url": "http://127.0.0.1:5000/policy-bundles",
        "credentials": {"s3_signing": {"environment_credentials": {}}},
    }
    bundle = rendered["bundles"]["replication"]
    assert bundle["resource"] == "opa/replication.tar.gz"
    assert bundle["polling"] == {"min_delay_seconds": 1, "max_delay_seconds": 2}
    assert bundle["persist"] is True
    assert rendered["persistence_directory"] == str(tmp_path / "state" / "opa" / "persisted")
    assert rendered["keys"][bundle["signing"]["keyid"]]["key"] == _PEM
    # OPA runs with a scrubbed environment: the signing credentials are handed to it explicitly.
    assert dict(pull.env) == {**_AWS, "AWS_REGION": "eu-west-1"}
    assert stat.S_IMODE(pull.config_file.stat().st_mode) == 0o600


def test_the_http_store_long_polls_with_the_read_token(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "    service:\n      url: http://hub:8282/bundles/replication\n      token: r3ad\n"
        "      long_poll_timeout_s: 20\n",
    )
    pull = prepare_pull(config.policy.bundle, tmp_path / "state", {})
    rendered = yaml.safe_load(pull.config_file.read_text())
    assert rendered["services"]["bundles"]["credentials"] == {"bearer": {"token": "r3ad"}}
    polling = rendered["bundles"]["replication"]["polling"]
    assert polling["long_polling_timeout_seconds"] == 20


@pytest.mark.parametrize(
    ("environ", "missing"),
    [
        ({}, "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION"),
        ({"AWS_ACCESS_KEY_ID": "id"}, "set AWS_SECRET_ACCESS_KEY, AWS_REGION"),
        (_AWS, "set AWS_REGION (or policy.bundle.service.region)"),
    ],
)
def test_s3_credentials_missing_from_the_environment_stop_the_startup(
    tmp_path: Path, environ: dict[str, str], missing: str
) -> None:
    config = _load(tmp_path, "    service: {url: 's3://b/k'}\n")
    with pytest.raises(ConfigError, match="environment credentials") as err:
        prepare_pull(config.policy.bundle, tmp_path / "state", environ)
    assert missing in err.value.message
    # AWS_DEFAULT_REGION is enough for us; OPA is then given AWS_REGION.
    pull = prepare_pull(
        config.policy.bundle,
        tmp_path / "state",
        {**_AWS, "AWS_DEFAULT_REGION": "ap-south-1"},
    )
    assert dict(pull.env) == {**_AWS, "AWS_REGION": "ap-south-1"}

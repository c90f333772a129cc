"""Publish target URLs and the OPA configs rendered for each store (kept in step with deploy/opa)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.opa_config import GCS_READ_SCOPE, opa_config
from sidecar.bundles.publish import PublishError, publisher_for, read_bundle_bytes
from sidecar.config import parse_target
from sidecar.errors import InvalidArgument

_DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "opa"
_PEM = "-----BEGIN PUBLIC KEY-----\nabc\n-----END PUBLIC KEY-----\n"


@pytest.mark.parametrize(
    ("url", "store", "bucket", "key"),
    [
        (
            "s3://policy-bundles/opa/replication.tar.gz",
            "s3",
            "policy-bundles",
            "opa/replication.tar.gz",
        ),
        ("gs://b1/bundle.tar.gz", "gcs", "b1", "bundle.tar.gz"),
        ("http://127.0.0.1:8282/bundles/replication", "http", "", "replication"),
        ("https://host/prefix/bundles/prod.v2", "http", "", "prod.v2"),
    ],
)
def test_target_urls_name_store_bucket_and_object(
    url: str, store: str, bucket: str, key: str
) -> None:
    target = parse_target(url)
    assert (target.store, target.bucket, target.key, target.url) == (store, bucket, key, url)


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket-only",
        "s3://bucket/dir/",
        "s3:///key",
        "gs://b/o?generation=1",
        "http://host/other/replication",
        "http://host/bundles/../secrets",
        "http://host/bundles/a/b",
        "http://host/bundles/",
        "ftp://host/bundles/x",
        "/local/path.tar.gz",
    ],
)
def test_malformed_target_urls_are_rejected_naming_the_flag(url: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_target(url)
    assert raised.value.field == "--to"


def test_http_target_without_token_is_rejected() -> None:
    with pytest.raises(InvalidArgument, match="token"):
        publisher_for("http://127.0.0.1:1/bundles/replication")


def test_publishing_refuses_bytes_that_changed_since_the_build(tmp_path: Path) -> None:
    path = tmp_path / "b.tar.gz"
    path.write_bytes(b"rebuilt behind our back")
    bundle = BuiltBundle(path, "r1", "sha256:" + "0" * 64, 23, ())
    with pytest.raises(PublishError, match="changed since it was built"):
        read_bundle_bytes(bundle)


def _shape(doc: Any, prefix: str = "") -> set[str]:
    """Return every key path of a config (values ignored: deploy files hold placeholders)."""
    if not isinstance(doc, dict):
        return {prefix}
    paths: set[str] = set()
    for key, value in doc.items():
        paths |= _shape(value, f"{prefix}.{key}" if prefix else str(key))
    return paths


@pytest.mark.parametrize(
    ("deploy", "url"),
    [
        ("s3.yaml", "s3://policy-bundles/opa/replication.tar.gz"),
        ("gcs.yaml", "gs://policy-bundles/opa/replication.tar.gz"),
        ("http.yaml", "https://policy-sidecar.policy.svc:8282/bundles/replication"),
    ],
)
def test_rendered_config_has_the_structure_deploy_documents(deploy: str, url: str) -> None:
    documented = yaml.safe_load((_DEPLOY / deploy).read_text())
    rendered = opa_config(url, verification_key_pem=_PEM, token="read-token")
    assert _shape(rendered) == _shape(documented)
    bundle = rendered["bundles"]["replication"]
    assert bundle["resource"] == documented["bundles"]["replication"]["resource"]
    assert bundle["signing"] == documented["bundles"]["replication"]["signing"]
    assert rendered["keys"]["replication"] == {"algorithm": "RS256", "key": _PEM}


def test_store_specific_urls_resources_and_credentials() -> None:
    s3 = opa_config("s3://bkt/a b/x.tar.gz", verification_key_pem=_PEM, region="eu-west-1")
    assert s3["services"]["bundles"]["url"] == "https://bkt.s3.eu-west-1.amazonaws.com"
    assert s3["bundles"]["replication"]["resource"] == "a%20b/x.tar.gz"
    moto = opa_config("s3://bkt/x", verification_key_pem=_PEM, endpoint_url="http://127.0.0.1:5/")
    assert moto["services"]["bundles"]["url"] == "http://127.0.0.1:5/bkt"  # path style

    gcs = opa_config("gs://bkt/dir/x.tar.gz", verification_key_pem=_PEM)
    assert gcs["services"]["bundles"]["url"] == "https://storage.googleapis.com/storage/v1/b/bkt/o"
    assert gcs["services"]["bundles"]["credentials"]["gcp_metadata"]["scopes"] == [GCS_READ_SCOPE]
    assert gcs["bundles"]["replication"]["resource"] == "dir%2Fx.tar.gz?alt=media"
    emulator = opa_config("gs://bkt/x", verification_key_pem=_PEM, gcs_credentials=None)
    assert "credentials" not in emulator["services"]["bundles"]

    http = opa_config("http://h:1/p/bundles/r", verification_key_pem=_PEM, long_poll_timeout_s=7)
    assert http["services"]["bundles"] == {"url": "http://h:1/p"}  # no token: no credentials
    assert http["bundles"]["replication"]["resource"] == "bundles/r"
    assert http["bundles"]["replication"]["polling"]["long_polling_timeout_seconds"] == 7


def test_object_stores_are_never_long_polled() -> None:
    for url in ("s3://b/k", "gs://b/k"):
        polling = opa_config(url, verification_key_pem=_PEM)["bundles"]["replication"]["polling"]
        assert "long_polling_timeout_seconds" not in polling

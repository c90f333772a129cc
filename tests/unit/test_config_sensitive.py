"""``policy.sensitive_data`` and ``policy.decision_records.mask``: defaults and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.bundles.build import BUNDLE_ROOTS, build_bundle
from sidecar.config import load_config
from sidecar.errors import BundleError, ConfigError
from sidecar.sensitive import SENSITIVE_ROOT


def test_defaults_are_off(tmp_path: Path) -> None:
    policy = load_config(None).policy
    assert not policy.sensitive_data.enabled
    assert policy.sensitive_data.check_interval_s == 10.0
    assert policy.decision_records.mask == ()


def test_no_bundle_root_can_hold_the_sensitive_root() -> None:
    # OPA refuses Data API writes under a bundle's roots, so a bundle owning (a prefix of)
    # "sensitive" would make loading the decrypted data impossible — or wipe it on activation.
    for root in BUNDLE_ROOTS:
        assert root and not SENSITIVE_ROOT.startswith(root) and not root.startswith(SENSITIVE_ROOT)


def test_a_bundle_with_sensitive_data_is_never_built(tmp_path: Path) -> None:
    (tmp_path / "signing.pem").write_text("unused: refused before signing")
    with pytest.raises(BundleError, match="data root 'sensitive' is outside the bundle roots"):
        build_bundle(
            source_dir=Path(__file__).resolve().parents[2],
            output=tmp_path / "bundle.tar.gz",
            signing_key=tmp_path / "signing.pem",
            extra_data={"sensitive/customers": {"allowlist": {"prod-us": ["c"]}}},
        )
    assert not (tmp_path / "bundle.tar.gz").exists()


def test_documents_resolve_against_the_config_directory(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "customers.enc.json").write_text("{}")
    (tmp_path / "kek.key").write_text("x")
    config = load_config(
        _write(
            tmp_path,
            "policy:\n  sensitive_data:\n"
            "    documents: {customers: secrets/customers.enc.json, costs/contracts: kek.key}\n"
            "    keyFile: kek.key\n    check_interval_s: 2s\n"
            "  decision_records:\n    mask: [input.image.labels.customer-id]\n",
        )
    )
    settings = config.policy.sensitive_data
    assert settings.enabled
    assert dict(settings.documents) == {
        "customers": str(tmp_path / "secrets" / "customers.enc.json"),
        "costs/contracts": str(tmp_path / "kek.key"),
    }
    assert settings.key_file == str(tmp_path / "kek.key")
    assert settings.check_interval_s == 2.0
    assert settings.source == str(tmp_path / "sidecar.yaml")
    assert config.policy.decision_records.mask == ("input.image.labels.customer-id",)


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "sidecar.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize(
    ("section", "key", "problem"),
    [
        ("documents: {a: missing.enc}\n    key_file: k.key", "documents.a", "does not exist"),
        ("documents: {a: doc.enc}", "", "exactly one of key_file and kms_key_id"),
        (
            "documents: {a: doc.enc}\n    key_file: k.key\n    kms_key_id: alias/x",
            "",
            "exactly one",
        ),
        ("documents: {a: doc.enc}\n    key_file: nope.key", "key_file", "does not exist"),
        ("documents: {a/: doc.enc}\n    key_file: k.key", "documents.a/", "data path"),
        ("documents: {a: doc.enc, a/b: doc.enc}\n    key_file: k.key", "documents.a/b", "overlaps"),
        ("kms_endpoint_url: localhost:4566", "kms_endpoint_url", "http(s)://"),
        ("check_interval_s: 0", "check_interval_s", "at least"),
        ("kms_key: alias/x", "kms_key", "did you mean 'kms_key_id'"),
    ],
)
def test_bad_sensitive_data_config_names_key_and_problem(
    tmp_path: Path, section: str, key: str, problem: str
) -> None:
    (tmp_path / "doc.enc").write_text("{}")
    (tmp_path / "k.key").write_text("x")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, f"policy:\n  sensitive_data:\n    {section}\n"))
    assert "policy.sensitive_data" + (f".{key}" if key else ": ") in err.value.message
    assert problem in err.value.message


def test_bad_mask_path_names_its_index(tmp_path: Path) -> None:
    body = "policy:\n  decision_records:\n    mask: [input.event, image.tag]\n"
    with pytest.raises(ConfigError, match=r"decision_records\.mask\[1\]: 'image\.tag'"):
        load_config(_write(tmp_path, body))

"""Issue 15 item 8: the ``secrets:`` section and ``auth.use_secrets_manager`` are read, not ignored.

Before, both loaded and the registry went anonymous. Now each registry using the manager is
settled at load time to one secret in one manager, and what cannot be located is refused
with ``FILE:LINE: key: problem``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.config import Config, SecretRef, load_config, secret_ref
from sidecar.errors import ConfigError
from tests.support.compat import compat_dir


def _load(tmp_path: Path, text: str, *, strict: bool = False) -> Config:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, strict=strict)


def _refs(tmp_path: Path, text: str) -> dict[str, SecretRef | None]:
    path = tmp_path / "sidecar.yaml"
    path.write_text(text, encoding="utf-8")
    config = load_config(path)
    return {r.name: secret_ref(r, config.secrets) for r in config.registries}


def test_freightliner_fields_locate_each_secret(tmp_path: Path) -> None:
    refs = _refs(
        tmp_path,
        """
secrets:
  useSecretsManager: true
  secretsManagerType: gcp
  gcpSecretProject: shared-proj
  registryCredsSecret: fleet-creds
registries:
  - name: harbor
    endpoint: https://harbor.example
    auth: {type: basic, use_secrets_manager: true, secret_name: harbor-prod}
  - name: quay
    endpoint: https://quay.example
    project: quay-proj
    auth: {useSecretsManager: true}
  - name: pinned
    endpoint: https://pinned.example
    auth: {use_secrets_manager: true, secret_name: projects/p9/secrets/s/versions/3}
  - name: aws-one
    endpoint: https://aws.example
    auth:
      use_secrets_manager: true
      secret_name: arn:aws:secretsmanager:eu-west-1:123456789012:secret:reg-AbCdEf
  - name: plain
    endpoint: https://plain.example
""",
    )
    assert refs == {
        "harbor": SecretRef("gcp", "projects/shared-proj/secrets/harbor-prod/versions/latest"),
        "quay": SecretRef("gcp", "projects/shared-proj/secrets/fleet-creds/versions/latest"),
        "pinned": SecretRef("gcp", "projects/p9/secrets/s/versions/3"),
        "aws-one": SecretRef(
            "aws", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:reg-AbCdEf", "eu-west-1"
        ),
        "plain": None,
    }


def test_aws_is_the_default_manager(tmp_path: Path) -> None:
    refs = _refs(
        tmp_path,
        "secrets: {awsSecretRegion: us-west-2}\nregistries:\n  - name: h\n"
        "    auth: {use_secrets_manager: true, secret_name: harbor/creds}\n",
    )
    assert refs == {"h": SecretRef("aws", "harbor/creds", "us-west-2")}


@pytest.mark.parametrize(
    ("text", "key", "line", "problem"),
    [
        (
            "registries:\n  - name: h\n    auth:\n      use_secrets_manager: true\n",
            "registries[0].auth.secret_name",
            3,
            "required when use_secrets_manager is true",
        ),
        (
            "secrets: {secretsManagerType: gcp}\nregistries:\n  - name: h\n    auth:\n"
            "      use_secrets_manager: true\n      secret_name: creds\n",
            "registries[0].auth.secret_name",
            6,
            "a GCP secret needs a project",
        ),
        (
            "secrets: {secretsManagerType: gcp, gcpSecretProject: p}\nregistries:\n  - name: h\n"
            "    auth:\n      use_secrets_manager: true\n      secret_name: bad/name\n",
            "registries[0].auth.secret_name",
            6,
            "not a GCP secret id",
        ),
        (
            "secrets: {registryCredsSecret: c}\nregistries:\n  - name: h\n    auth:\n"
            "      use_secrets_manager: true\n      username: u\n      password: p\n",
            "registries[0].auth.password",
            7,
            "not allowed with use_secrets_manager",
        ),
        (
            "secrets:\n  secretsManagerType: vault\n",
            "secrets.secretsManagerType",
            2,
            "'vault' is not one of aws, gcp",
        ),
        (
            "secrets:\n  cache_ttl_s: 0\n",
            "secrets.cache_ttl_s",
            2,
            "must be at least 1",
        ),
        (
            "secrets:\n  gcp_insecure: true\n",
            "secrets.gcp_insecure",
            2,
            "needs secrets.gcp_endpoint",
        ),
    ],
    ids=[
        "no-secret-name",
        "gcp-no-project",
        "gcp-bad-id",
        "password-too",
        "unknown-manager",
        "ttl",
        "insecure-no-endpoint",
    ],
)
def test_unlocatable_secrets_are_refused_at_load(
    tmp_path: Path, text: str, key: str, line: int, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    assert str(caught.value).startswith(f"{tmp_path / 'sidecar.yaml'}:{line}: {key}: ")
    assert problem in str(caught.value)


def test_a_manager_no_registry_uses_is_a_warning(tmp_path: Path) -> None:
    text = (
        "secrets:\n  useSecretsManager: true\n  registryCredsSecret: x\nregistries:\n  - name: h\n"
    )
    config = _load(tmp_path, text)
    assert any("no registry sets auth.use_secrets_manager" in w for w in config.warnings)
    with pytest.raises(ConfigError, match=r"secrets\.useSecretsManager: no registry sets"):
        _load(tmp_path, text, strict=True)


def test_freightliner_example_still_loads() -> None:
    config = load_config(compat_dir() / "config-with-registries.yaml")
    assert config.secrets.registry_creds_secret == "freightliner-registry-credentials"
    assert not config.secrets.use_secrets_manager

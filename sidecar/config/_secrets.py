"""The top-level ``secrets:`` section: the secret manager that holds registry credentials.

Freightliner writes this section (``useSecretsManager``, ``secretsManagerType``,
``awsSecretRegion``, ``gcpSecretProject``, ``gcpCredentialsFile``, ``registryCredsSecret``,
``encryptionKeysSecret``) and marks registries with ``auth.use_secrets_manager`` and
``auth.secret_name``. The sidecar reads a registry's credentials from the secret named there (or
from ``registryCredsSecret``); the cache and endpoint keys are its own. Which secret a registry
reads, and from which manager, is settled here at load time, so a registry can never end up
anonymous because its secret was not described well enough.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from sidecar.config._model import URL, Bool, Duration, Expanded, HostPort, Str, keys, read_record
from sidecar.config._read import Node, Warnings, did_you_mean, resolve_path
from sidecar.config._registries import RegistryConfig
from sidecar.config._scalars import choice

__all__ = [
    "DEFAULT_SECRET_CACHE_TTL_S",
    "SECRET_MANAGERS",
    "SecretRef",
    "SecretsSettings",
    "check_registry_secrets",
    "parse_secrets",
    "secret_ref",
]

SECRET_MANAGERS = ("aws", "gcp")
DEFAULT_SECRET_CACHE_TTL_S = 300.0  # how long a fetched secret is used before it is read again
DEFAULT_SECRET_FETCH_TIMEOUT_S = 10.0
_GCP_NAME = re.compile(r"^projects/([^/]+)/secrets/([^/]+)(?:/versions/([^/]+))?$")
_GCP_SHORT = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_AWS_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):")


@dataclass(frozen=True, slots=True)
class SecretsSettings:
    """``secrets:``: the secret manager registry credentials come from, and how long they are kept."""

    use_secrets_manager: Bool = False
    secrets_manager_type: Annotated[
        str, BeforeValidator(choice(SECRET_MANAGERS), json_schema_input_type=Literal["aws", "gcp"])
    ] = "aws"
    # AWS: the region of the secrets (else the region of an ARN, else the SDK's default chain).
    aws_secret_region: Expanded = ""
    # GCP: the project of a secret named without one (else the registry's own ``project``).
    gcp_secret_project: Expanded = ""
    # GCP: a service-account key file (else application default credentials).
    gcp_credentials_file: Expanded = ""
    # The secret of registries that set use_secrets_manager without a secret_name of their own.
    registry_creds_secret: Expanded = ""
    # Freightliner's KMS key names; read, not used (sensitive data has policy.sensitive_data).
    encryption_keys_secret: Str = ""
    # A fetched secret is used this long, then read again; a registry 401 reads it at once.
    cache_ttl_s: Annotated[Duration, Field(ge=1)] = DEFAULT_SECRET_CACHE_TTL_S
    # How long one read of a secret may take before that registry's request fails.
    fetch_timeout_s: Annotated[Duration, Field(ge=0.1)] = DEFAULT_SECRET_FETCH_TIMEOUT_S
    # Another Secrets Manager endpoint (a VPC endpoint, or an emulator in tests).
    aws_endpoint_url: URL | None = None
    # Another Secret Manager endpoint, HOST:PORT (a private endpoint, or an emulator).
    gcp_endpoint: HostPort = ""
    # Plaintext gRPC with no credentials to gcp_endpoint: for a local emulator only.
    gcp_insecure: Bool = False


SECRETS_KEYS = keys(SecretsSettings)


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where one registry's credentials are kept: manager, secret id, and a label for messages."""

    manager: Literal["aws", "gcp"]
    # AWS: the SecretId (name or ARN). GCP: projects/P/secrets/S/versions/V.
    secret_id: str
    # AWS: the region to ask (empty: the SDK's default chain).
    region: str = ""

    @property
    def label(self) -> str:
        """How messages name the secret: manager and id (never its value)."""
        kind = "AWS Secrets Manager" if self.manager == "aws" else "GCP Secret Manager"
        return f"{kind} secret {self.secret_id!r}"


def secret_ref(registry: RegistryConfig, settings: SecretsSettings) -> SecretRef | None:
    """Return where ``registry`` keeps its credentials, or None when it does not use a manager.

    Raises ValueError (the loader turns it into a ConfigError at ``auth.secret_name``) when the
    secret cannot be located: no name, or a GCP secret without a project.
    """
    auth = registry.auth
    if not auth.use_secrets_manager:
        return None
    name = auth.secret_name or settings.registry_creds_secret
    if not name:
        raise ValueError(
            "required when use_secrets_manager is true (or set secrets.registry_creds_secret)"
        )
    full = _GCP_NAME.match(name)
    arn = _AWS_ARN.match(name)
    manager = "gcp" if full else "aws" if arn else settings.secrets_manager_type
    if manager == "aws":
        region = settings.aws_secret_region or (arn.group(1) if arn else "")
        return SecretRef("aws", name, region)
    if full:
        version = full.group(3) or "latest"
        return SecretRef(
            "gcp", f"projects/{full.group(1)}/secrets/{full.group(2)}/versions/{version}"
        )
    if not _GCP_SHORT.match(name):
        raise ValueError(
            f"{name!r} is not a GCP secret id (letters, digits, - and _) "
            "nor projects/PROJECT/secrets/NAME[/versions/VERSION]"
        )
    project = settings.gcp_secret_project or registry.project
    if not project:
        raise ValueError(
            "a GCP secret needs a project: write projects/PROJECT/secrets/NAME, or set "
            "secrets.gcp_secret_project or the registry's project"
        )
    return SecretRef("gcp", f"projects/{project}/secrets/{name}/versions/latest")


def parse_secrets(node: Node, base: Path, warnings: Warnings) -> SecretsSettings:
    """Parse ``secrets:`` (Freightliner's section: unknown keys warn, as in ``registries:``)."""
    for key, child in node.fields().items():
        if key not in SECRETS_KEYS:
            warnings.warn(child, f"unknown secrets key{did_you_mean(key, SECRETS_KEYS)}")
    settings = read_record(SecretsSettings, node, base=base, lenient=True)
    if settings.gcp_credentials_file:  # Freightliner writes "" for "none": not a path then
        path = resolve_path(settings.gcp_credentials_file, base)
        settings = replace(settings, gcp_credentials_file=path)
    if settings.gcp_insecure and not settings.gcp_endpoint:
        raise node.child("gcp_insecure", True).error(
            "needs secrets.gcp_endpoint (plaintext is only for a local emulator)"
        )
    return settings


def check_registry_secrets(
    registries: Sequence[RegistryConfig],
    nodes: Collection[Node],
    settings: SecretsSettings,
    secrets_node: Node,
    warnings: Warnings,
) -> None:
    """Every registry that uses the manager must name a secret it can locate; refuse otherwise."""
    users = 0
    for registry, node in zip(registries, nodes, strict=True):
        auth = node.fields().get("auth") or node.child("auth", None)
        try:
            ref = secret_ref(registry, settings)
        except ValueError as exc:
            where = auth.fields().get("secret_name") or auth.child("secret_name", None)
            raise where.error(str(exc)) from None
        if ref is None:
            continue
        users += 1
        fields = auth.fields()
        for key in ("password", "token"):
            if getattr(registry.auth, key):
                raise fields[key].error(
                    "not allowed with use_secrets_manager: the credentials come from the secret"
                )
    if settings.use_secrets_manager and not users:
        flag = secrets_node.fields().get("use_secrets_manager") or secrets_node
        warnings.warn(
            flag,
            "no registry sets auth.use_secrets_manager: nothing is read from the secret manager",
        )

"""The managed OPA's pull mode: the OPA config that makes it poll a bundle store, checked up front.

With ``policy.bundle.service`` set, the sidecar builds no bundle: it writes the config rendered by
:func:`sidecar.bundles.opa_config.opa_config` under ``state_dir/opa`` and the managed OPA runs
``opa run --server --config-file`` on it. OPA downloads, verifies (RS256, the configured
verification key) and activates each published revision; a tampered or unsigned one is refused
and the previous revision keeps serving.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from sidecar.bundles.opa_config import opa_config
from sidecar.config import BundleSettings
from sidecar.errors import ConfigError

__all__ = ["PullSource", "prepare_pull"]

_S3_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@dataclass(frozen=True, slots=True)
class PullSource:
    """What a managed OPA pulling bundles runs with: its config file and extra environment."""

    config_file: Path
    env: Mapping[str, str]
    url: str


def prepare_pull(
    bundle: BundleSettings, state_dir: Path, environ: Mapping[str, str] | None = None
) -> PullSource:
    """Write the OPA config for ``bundle.service`` under ``state_dir/opa``; ConfigError if unusable.

    OPA signs S3 requests with credentials from its environment (passed on from the sidecar's:
    ``env``, the only variables OPA gets beyond the sandbox allowlist) and only reports missing
    ones in its log at every poll; they are checked here instead.
    """
    settings = bundle.service
    if settings is None or bundle.verification_key is None:
        raise ConfigError(
            "policy.bundle.service", "pull mode needs a service and a verification_key"
        )
    verification_key = Path(bundle.verification_key)
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    region = settings.region
    if settings.store == "s3":
        missing = [name for name in _S3_ENV if not environ.get(name)]
        region = region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or ""
        if not region:
            missing.append("AWS_REGION")
        if missing:
            raise ConfigError(
                "policy.bundle.service",
                f"OPA signs S3 requests with environment credentials: set {', '.join(missing)}"
                + (" (or policy.bundle.service.region)" if "AWS_REGION" in missing else ""),
            )
        env["AWS_REGION"] = region  # OPA reads only AWS_REGION, not AWS_DEFAULT_REGION
        # OPA runs with a scrubbed environment: it gets these credentials and nothing else.
        env.update(
            {name: environ[name] for name in (*_S3_ENV, "AWS_SESSION_TOKEN") if environ.get(name)}
        )
    try:
        pem = verification_key.read_text()
    except OSError as exc:
        raise ConfigError(
            "policy.bundle.verification_key", f"cannot read {verification_key}: {exc}"
        ) from exc
    work = state_dir / "opa"
    work.mkdir(parents=True, exist_ok=True)
    rendered = opa_config(
        settings.url,
        verification_key_pem=pem,
        endpoint_url=settings.endpoint_url,
        region=region or "us-east-1",
        token=settings.token,
        gcs_credentials="gcp_metadata" if settings.credentials == "gcp_metadata" else None,
        min_delay_s=settings.min_delay_s,
        max_delay_s=settings.max_delay_s,
        long_poll_timeout_s=settings.long_poll_timeout_s,
        persistence_directory=str(work / "persisted") if settings.persist else None,
    )
    path = work / "config.yaml"
    # Owner-only: the file may hold the bundle server's read token.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when an older file was created with another mode
    with os.fdopen(fd, "w") as handle:
        yaml.safe_dump(rendered, handle, sort_keys=False)
    return PullSource(path, env, settings.url)

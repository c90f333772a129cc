"""Builds the sidecar's local bundle from the configured sources, keys and legacy rules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sidecar.bundles.build import BuiltBundle, build_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.config import Config
from sidecar.errors import ConfigError
from sidecar.fallback.legacy import legacy_rules_data
from sidecar.tools import find_tool

__all__ = ["LocalBundle", "build_local_bundle", "signing_keys"]


@dataclass(frozen=True, slots=True)
class LocalBundle:
    """A built, signed bundle and the public key OPA verifies it with."""

    bundle: BuiltBundle
    verification_key: Path


def signing_keys(config: Config) -> tuple[Path, Path]:
    """Return (private, public) PEM paths: the configured pair, else a dev pair kept in state_dir."""
    settings = config.policy.bundle
    if settings.signing_key and settings.verification_key:
        return Path(settings.signing_key), Path(settings.verification_key)
    if settings.signing_key or settings.verification_key:
        raise ConfigError(
            "policy.bundle.signing_key",
            "set both signing_key and verification_key, or neither (a local dev key pair is "
            "generated then)",
        )
    key_dir = Path(config.policy.state_dir) / "keys"
    private, public = key_dir / "bundle-signing.pem", key_dir / "bundle-verification.pem"
    if not (private.exists() and public.exists()):
        # A dev pair is generated once and reused, so restarts keep verifying earlier bundles.
        key_dir.mkdir(parents=True, exist_ok=True)
        generated = generate_keypair(key_dir)
        generated[0].replace(private)
        generated[1].replace(public)
    return private, public


def build_local_bundle(
    config: Config,
    *,
    output: Path | None = None,
    revision: str | None = None,
    signing_key: Path | None = None,
) -> LocalBundle:
    """Build and sign the bundle from rego/, bundles/default, data_dirs and the legacy rules."""
    private, public = signing_keys(config)
    settings = config.policy.bundle
    legacy = legacy_rules_data(
        config.policy.legacy.rules, config.policy.legacy.sync_configs, config.inventory()
    )
    built = build_bundle(
        source_dir=Path(settings.source_dir),
        output=output or Path(settings.output),
        signing_key=signing_key or private,
        revision=revision or settings.revision,
        data_dirs=[Path(d) for d in settings.data_dirs],
        extra_data={"replication/legacy": legacy},
        opa_binary=find_tool("opa", config.policy.opa.binary),
    )
    return LocalBundle(bundle=built, verification_key=public)

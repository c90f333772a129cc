"""``policy-sidecar bundle build|verify|keygen``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sidecar.bundles.build import verify_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.bundles.local import build_local_bundle, signing_keys
from sidecar.config import Config
from sidecar.tools import find_tool

__all__ = ["run"]


def run(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    """Run one bundle action and return its JSON report."""
    action = args.bundle_command
    if action == "build":
        local = build_local_bundle(
            config,
            output=Path(args.output),
            revision=args.revision,
            signing_key=Path(args.signing_key) if args.signing_key else None,
        )
        built = local.bundle
        return {
            "path": str(built.path),
            "revision": built.revision,
            "digest": built.digest,
            "size_bytes": built.size,
            "files": list(built.files),
            "verification_key": str(local.verification_key),
        }
    if action == "verify":
        key = Path(args.verification_key) if args.verification_key else signing_keys(config)[1]
        info = verify_bundle(
            Path(args.bundle_path), key, opa_binary=find_tool("opa", config.policy.opa.binary)
        )
        return {
            "valid": True,
            "revision": info.revision,
            "digest": info.digest,
            "files": list(info.files),
        }
    if action == "keygen":
        private, public = generate_keypair(Path(args.directory))
        return {"signing_key": str(private), "verification_key": str(public)}
    raise AssertionError(f"unhandled bundle action {action}")  # argparse rejects unknown ones

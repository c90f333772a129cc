"""Bundle building, signing and verification with the real ``opa`` (and the rule-chain checks)."""

from __future__ import annotations

from sidecar.bundles.build import BUNDLE_ROOTS, BuiltBundle, BundleInfo, build_bundle, verify_bundle
from sidecar.bundles.chains import find_rule_problems
from sidecar.bundles.keys import generate_keypair

__all__ = [
    "BUNDLE_ROOTS",
    "BuiltBundle",
    "BundleInfo",
    "build_bundle",
    "find_rule_problems",
    "generate_keypair",
    "verify_bundle",
]

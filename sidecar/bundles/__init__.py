"""Bundle building, signing and verification with the real ``opa`` (and the rule-chain checks)."""

from __future__ import annotations

from sidecar.bundles._publish_sign import sign_bundle
from sidecar.bundles._validate_data import DataProblem, load_data
from sidecar.bundles.build import BUNDLE_ROOTS, BuiltBundle, BundleInfo, build_bundle, verify_bundle
from sidecar.bundles.chains import find_rule_problems
from sidecar.bundles.keys import generate_keypair

__all__ = [
    "BUNDLE_ROOTS",
    "BuiltBundle",
    "BundleInfo",
    "DataProblem",
    "build_bundle",
    "find_rule_problems",
    "generate_keypair",
    "load_data",
    "sign_bundle",
    "verify_bundle",
]

"""Where Freightliner's example configs live: the shared checkout when present, else our copy."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["COMPAT_FILES", "compat_dir"]

_ROOT = Path(__file__).resolve().parents[2]

#: The four files every build must load; listed so a missing directory fails instead of skipping.
COMPAT_FILES = (
    "config-with-registries.yaml",
    "config_example.yaml",
    "registries.yaml",
    "sync-config.yaml",
)


def compat_dir() -> Path:
    """Return the directory holding Freightliner's example configs.

    The sibling ``shared/`` checkout is the source of truth; CI may clone elsewhere, so a
    copy taken from it lives in ``tests/fixtures/compat`` (``POLICY_SIDECAR_COMPAT_DIR`` overrides).
    """
    override = os.environ.get("POLICY_SIDECAR_COMPAT_DIR")
    if override:
        return Path(override)
    sibling = _ROOT.parent / "shared" / "compat" / "freightliner"
    if sibling.is_dir():
        return sibling
    return _ROOT / "tests" / "fixtures" / "compat" / "freightliner"

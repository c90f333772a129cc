"""Fail modes (DESIGN §6): closed, last-known and the native legacy rules, used while OPA is away.

* :mod:`sidecar.fallback.modes` — :class:`Fallback`, the answer of the configured fail mode.
* :mod:`sidecar.fallback.legacy` — Freightliner rules as bundle data, and their native matching.
"""

from __future__ import annotations

from sidecar.fallback.legacy import legacy_rules_data
from sidecar.fallback.modes import FailMode, Fallback

__all__ = ["FailMode", "Fallback", "legacy_rules_data"]

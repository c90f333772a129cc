"""The composition root: the only place that wires the sidecar's packages to each other.

``sidecar`` builds a running sidecar (gRPC, OPA, replication, health, governance, webhooks) from one
Config; ``policy`` (the policy runtime and the decision path on it), ``replication``, ``health``,
``governance`` and ``reconcile`` build those parts; ``bundle`` builds the local signed bundle
(rego/ + bundle data + legacy rules as data) that a managed OPA serves.
"""

from __future__ import annotations

from sidecar.app.bundle import LocalBundle, build_local_bundle, signing_keys
from sidecar.app.policy import PolicyRuntime, policy_runtime
from sidecar.app.sidecar import Sidecar, run_forever

__all__ = [
    "LocalBundle",
    "PolicyRuntime",
    "Sidecar",
    "build_local_bundle",
    "policy_runtime",
    "run_forever",
    "signing_keys",
]

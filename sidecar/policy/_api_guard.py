"""OPA's REST API behind a bearer token: the authorization policy OPA runs on its own API.

OPA runs with ``--authentication=token --authorization=basic``, so every request is first decided
by a Rego rule on ``{identity, method, path, ...}``. That rule must not come from the bundle
(bundles are distributed; and ``data.system.authz`` is already the admin RBAC, queried with
``{caller, action, target}``), so OPA is pointed at a package of its own with
``default_authorization_decision`` and loads it as a second, local bundle (``file://``) with a
disjoint root. A bundle that claims that root does not activate beside it, so no submitted policy
can widen OPA's API. The rule holds only the SHA-256 of the per-launch token, never the token.
"""

from __future__ import annotations

import hashlib
import io
import json
import secrets
import tarfile
from pathlib import Path

__all__ = ["API_BUNDLE", "api_args", "auth_headers", "new_api_token", "write_api_bundle"]

# Bundle name (as OPA reports it in provenance) and root of the API authorization policy.
API_BUNDLE = "sidecar_opa_api"
_FILE = "sidecar-opa-api.tar.gz"

_POLICY = """\
# METADATA
# title: OPA REST API authorization (written by the sidecar at launch; never in a bundle)
# description: The sidecar's requests carry its per-launch token; readiness probes need none.
package {root}

import rego.v1

default allow := false

# OPA's own request shape: identity is the bearer token, path the request path's segments.
allow if {{
	is_string(input.identity)
	is_array(input.path)
	crypto.sha256(input.identity) == "{digest}"
}}

# GET /health (?bundles, /live, /ready) tells only whether OPA is up: probes may ask.
allow if {{
	input.method == "GET"
	input.path[0] == "health"
}}
"""


def new_api_token() -> str:
    """Return a fresh random token for one OPA (256 bits)."""
    return secrets.token_urlsafe(32)


def auth_headers(token: str | None) -> dict[str, str]:
    """Return the header that authenticates a request to a managed OPA ({} without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


def write_api_bundle(directory: Path, token: str) -> Path:
    """Write the API authorization bundle for ``token`` into ``directory``; return its path."""
    digest = hashlib.sha256(token.encode()).hexdigest()
    files = {
        ".manifest": json.dumps({"roots": [API_BUNDLE], "revision": ""}).encode(),
        f"{API_BUNDLE}/api.rego": _POLICY.format(root=API_BUNDLE, digest=digest).encode(),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(body), 0o600
            archive.addfile(info, io.BytesIO(body))
    path = directory / _FILE
    path.write_bytes(buffer.getvalue())
    path.chmod(0o600)
    return path


def api_args(bundle: Path) -> list[str]:
    """Return the ``opa run`` flags that put the API behind the token policy in ``bundle``."""
    prefix = f"bundles.{API_BUNDLE}"
    return [
        "--authentication=token",
        "--authorization=basic",
        "--set",
        f"default_authorization_decision=/{API_BUNDLE}/allow",
        "--set",
        f"{prefix}.resource=file://{bundle.resolve()}",
        "--set",
        f"{prefix}.persist=false",
        # The file changes only with a new launch: look at it rarely.
        "--set",
        f"{prefix}.polling.min_delay_seconds=600",
        "--set",
        f"{prefix}.polling.max_delay_seconds=1200",
    ]

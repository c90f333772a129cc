"""Locates the external programs the sidecar runs (opa, conftest, regal, jaeger) and fences them.

Submitted Rego runs in every OPA we start (``opa build``/``check``/``test`` during validation, the
serving OPA), so each runs in a sandbox: a scrubbed environment (:func:`sandbox_env`) and, where
OPA accepts one, the capabilities file :data:`OPA_CAPABILITIES`, which lacks the builtins in
:data:`SANDBOX_REMOVED_BUILTINS`. ``opa run`` takes no capabilities (OPA issue #4153), so a bundle
reaches the serving OPA only through build, validation or a reload probe that all apply them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sidecar.errors import ToolMissing

__all__ = [
    "OPA_CAPABILITIES",
    "SANDBOX_REMOVED_BUILTINS",
    "find_tool",
    "sandbox_capabilities",
    "sandbox_env",
    "tools_dir",
]

# Generated from `opa capabilities --current` of the pinned OPA by scripts/opa-capabilities.py.
OPA_CAPABILITIES = Path(__file__).with_name("opa_capabilities.json")

# Builtins a policy may not call, and why. Kept: the pure net.cidr_* family (address arithmetic),
# time.now_ns, rand.intn and uuid.rfc4122 (nondeterministic but confined to the process:
# decisions read input.now, and tests may legitimately use the clock), print/trace (OPA's log).
SANDBOX_REMOVED_BUILTINS: Mapping[str, str] = {
    "http.send": "reaches any host (instance metadata included)",
    "net.lookup_ip_addr": "resolves names: a DNS query leaks data even without a connection",
    "opa.runtime": "exposes OPA's environment variables (cloud credentials) and its config",
    "json.match_schema": "fetches remote $ref URLs of the schema",
    "json.verify_schema": "fetches remote $ref URLs of the schema",
}

# What an OPA child keeps of our environment: what a Go program needs to run and to reach a
# bundle store (CA bundles, proxies), nothing that grants anything. Credentials a child needs
# (S3 signing in pull mode) are passed to it explicitly.
_ENV_ALLOWLIST = (
    "PATH",
    "HOME",
    "TMPDIR",
    "LANG",
    "LC_ALL",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


def sandbox_env(
    extra: Mapping[str, str] | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Return the environment for a child running policies: the allowlist, then ``extra``."""
    source = os.environ if environ is None else environ
    env = {name: source[name] for name in _ENV_ALLOWLIST if name in source}
    env.setdefault("PATH", os.defpath)
    env.update(extra or {})
    return env


def sandbox_capabilities(current: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``opa capabilities --current`` without the removed builtins and with no network.

    ``allow_net: []`` also stops remote schema and ``http.send`` hosts where OPA honours it.
    """
    builtins = [
        b
        for b in current.get("builtins", [])
        if isinstance(b, Mapping) and b.get("name") not in SANDBOX_REMOVED_BUILTINS
    ]
    return {**current, "builtins": builtins, "allow_net": []}


def tools_dir() -> Path:
    """Return the cache directory scripts/install-tools.sh links the pinned tools into."""
    override = os.environ.get("POLICY_SIDECAR_TOOLS")
    if override:
        return Path(override) / "bin"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "policy-sidecar" / "tools" / "bin"


def find_tool(name: str, explicit: str | None = None) -> Path:
    """Return the path of tool ``name``: an explicit path, the pinned cache, then ``$PATH``."""
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise ToolMissing(f"{name}: configured path {explicit} is not an executable file")
    cached = tools_dir() / name
    if cached.exists() and os.access(cached, os.X_OK):
        return cached
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ToolMissing(
        f"{name} is not installed: run scripts/install-tools.sh (builds the pinned version into "
        f"{tools_dir()})"
    )

"""Locates the external programs the sidecar runs (opa, conftest, regal, jaeger)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sidecar.errors import ToolMissing

__all__ = ["find_tool", "tools_dir"]


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

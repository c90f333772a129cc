"""The import contract of sidecar/ (../shared/LAYOUT.md, DESIGN §2), checked over the ``ast``.

Packages sit on floors, entry points on top and infrastructure at the ground. A module may import
its own package and any package on a lower floor; packages on one floor are independent of each
other. On top of the floors:

* no module imports another package's private module (a ``_name`` path component);
* ``api/`` imports a use case only through its face (``sidecar.replicate``, never
  ``sidecar.replicate.service``), so the servicers stay translators;
* nothing but the entry points (``api/``, ``cli/``) imports gRPC (``google.rpc`` and
  ``grpc_status`` included) or the generated ``_proto`` code:
  evaluation, ``decide.py`` included, never sees a protobuf message. The one exception is a
  cloud SDK's own channel: ``secrets/`` may import ``grpc`` (never ``_proto``) to point Google's
  Secret Manager client at a plaintext emulator, which that SDK offers no other way to do; so may
  ``webhooks/`` for its Pub/Sub subscriber client.

:func:`violations` returns one line per offending import, naming file, line and rule, so a failing
test says exactly which import to move.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FLOORS", "GRPC_ALLOWED", "GRPC_CLIENTS", "USE_CASES", "Import", "imports", "violations"]

# Top to bottom. Each inner tuple is one floor; its packages must not import each other.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("__main__", "testing"),  # entry point; the test doubles shipped with the package
    ("cli",),
    ("app",),  # the composition root: the only package that wires the others together
    ("api",),
    ("health", "governance", "webhooks", "reconcile"),  # use cases …
    ("replicate",),  # … health's recovery replays deferred work through replicate
    ("decide",),
    ("fallback", "sensitive"),
    ("enrich", "policy", "bundles", "audit"),
    ("oci", "store", "secrets"),  # secrets: registry credentials, handed to oci by app/
    ("config", "typing"),
    ("records",),
    ("masking", "model", "tools", "telemetry", "tasks"),  # tasks: stopping background tasks
    ("errors",),
)
USE_CASES = frozenset(("replicate", "reconcile", "health", "governance", "webhooks"))
# Generated code and the gRPC runtime belong to the edges that speak gRPC.
GRPC_ALLOWED = frozenset(("api", "cli", "__main__"))
# Clients of another service's gRPC API through its SDK (the channel only; no servers, no _proto).
GRPC_CLIENTS = frozenset(("secrets", "webhooks"))
_GENERATED = "_proto"


@dataclass(frozen=True, slots=True)
class Import:
    """One import statement's target, with where it was written."""

    path: Path  # relative to the directory holding the package
    line: int
    source: str  # the importing package: first component below the root package
    module: str  # the imported module, dotted


def _package_of(relative: Path) -> str:
    return relative.parts[0].removesuffix(".py")


def imports(root: Path) -> Iterator[Import]:
    """Yield every absolute import in the package at ``root`` (generated code excluded)."""
    top = root.name
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] == _GENERATED:
            continue
        source = _package_of(relative)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets.append(node.module)
                # `from pkg import _private` names a private module (or name) of pkg.
                targets += [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            elif isinstance(node, ast.ImportFrom) and node.level:
                targets.append(f"{top}.(relative)")
            elif isinstance(node, ast.Import):
                targets += [a.name for a in node.names]
            for module in targets:
                yield Import(Path(top) / relative, node.lineno, source, module)


def _floor(package: str, floors: Sequence[tuple[str, ...]]) -> int | None:
    for index, floor in enumerate(floors):
        if package in floor:
            return index
    return None


def _check(imp: Import, top: str, floors: Sequence[tuple[str, ...]]) -> Iterator[str]:
    where = f"{imp.path}:{imp.line}: imports {imp.module}"
    parts = imp.module.split(".")
    # google.rpc (the rich error details) is a gRPC wire type like the generated code.
    grpc_modules = ("grpc", "grpc_health", "grpc_reflection", "grpc_status")
    if parts[0] in grpc_modules or parts[:2] in ([top, _GENERATED], ["google", "rpc"]):
        sdk_channel = parts == ["grpc"] and imp.source in GRPC_CLIENTS
        if imp.source not in GRPC_ALLOWED and not sdk_channel:
            yield f"{where}: only {', '.join(sorted(GRPC_ALLOWED))} may use gRPC"
        return
    if parts[0] != top or len(parts) < 2:
        return
    if parts[1] == "(relative)":
        yield f"{where}: use absolute imports"
        return
    target = parts[1]
    if target == imp.source:
        return
    if any(p.startswith("_") and not p.startswith("__") for p in parts[1:]):
        yield f"{where}: private module of {target}/; import its face ({top}.{target})"
    if imp.source == "api" and target in USE_CASES and len(parts) > 2:
        yield f"{where}: api/ uses a use case through its face ({top}.{target}) only"
    mine, theirs = _floor(imp.source, floors), _floor(target, floors)
    if mine is None:
        yield f"{imp.path}: package {imp.source} is on no floor of the contract"
    elif theirs is None:
        yield f"{where}: package {target} is on no floor of the contract"
    elif theirs < mine:
        yield f"{where}: upward import ({imp.source} is below {target})"
    elif theirs == mine:
        yield f"{where}: {imp.source} and {target} share a floor and must be independent"


def violations(root: Path, floors: Sequence[tuple[str, ...]] = FLOORS) -> list[str]:
    """Return one message per import in the package at ``root`` that breaks the contract."""
    found: list[str] = []
    for imp in imports(root):
        found += _check(imp, root.name, floors)
    return sorted(set(found))

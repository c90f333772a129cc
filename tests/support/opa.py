"""Real-OPA test helpers: a tiny policy source tree, signing keys, signed bundles, ManagedOpa.

Tests build their own small ``package replication`` tree instead of the production rego/: what is
under test here is the OPA plumbing, not the policy.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sidecar.bundles.build import BuiltBundle, build_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.policy.managed import ManagedOpa
from sidecar.policy.opa import OpaEngine
from sidecar.tools import find_tool

__all__ = [
    "TEST_POLICY",
    "SigningKeys",
    "build_test_bundle",
    "bundle_files",
    "opa_binary",
    "opa_bundle",
    "opa_engine",
    "opa_keys",
    "opa_server",
    "opa_source",
    "pack_bundle",
    "rewrite_bundle",
    "running_opa",
    "write_source_tree",
]

TEST_POLICY = """\
package replication

import rego.v1

# Defined only when the input names an event, so `{}` shows what "undefined" looks like.
decision := {
	"allow": input.event != "deny",
	"tag": input.image.tag,
	"mode": data.replication.settings.mode,
} if input.event

answer := 42

conflict := 1 if input.a

conflict := 2 if input.b
"""

_SYSTEM_POLICY = """\
package system.authz

import rego.v1

default allow := false
"""


@dataclass(frozen=True, slots=True)
class SigningKeys:
    """A bundle signing key pair: ``private`` signs, ``public`` verifies."""

    private: Path
    public: Path


def write_source_tree(
    root: Path,
    *,
    policy: str = TEST_POLICY,
    settings: Mapping[str, Any] | None = None,
    rules: list[Any] | None = None,
    tenants: Mapping[str, Any] | None = None,
) -> Path:
    """Write rego/ (with a test and a conftest policy that must not ship) and bundles/default."""
    (root / "rego" / "replication").mkdir(parents=True, exist_ok=True)
    (root / "rego" / "system").mkdir(parents=True, exist_ok=True)
    (root / "rego" / "inventory").mkdir(parents=True, exist_ok=True)
    (root / "rego" / "replication" / "decision.rego").write_text(policy)
    (root / "rego" / "replication" / "decision_test.rego").write_text(
        "package replication_test\n\nimport rego.v1\n\n"
        "test_answer if data.replication.answer == 42\n"
    )
    (root / "rego" / "system" / "authz.rego").write_text(_SYSTEM_POLICY)
    (root / "rego" / "inventory" / "inventory.rego").write_text("package main\n")
    data_root = root / "bundles" / "default" / "replication"
    _write_json(data_root / "settings" / "data.json", settings or {"mode": "default"})
    if rules is not None:
        _write_json(data_root / "rules" / "data.json", rules)
    if tenants is not None:
        _write_json(data_root / "tenants" / "data.json", tenants)
    return root


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def build_test_bundle(source: Path, keys: SigningKeys, output: Path, **kwargs: Any) -> BuiltBundle:
    """Build and sign ``source`` into ``output`` with the real ``opa build``."""
    return build_bundle(
        source_dir=source,
        output=output,
        signing_key=keys.private,
        opa_binary=find_tool("opa"),
        **kwargs,
    )


def bundle_files(raw: bytes) -> dict[str, bytes]:
    """Return a bundle archive's regular files as {name: content} (``opa build``'s "/" dropped)."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
        return {
            m.name.lstrip("/"): archive.extractfile(m).read()  # type: ignore[union-attr]
            for m in archive.getmembers()
            if m.isfile()
        }


def pack_bundle(
    files: Mapping[str, bytes], extra: Callable[[tarfile.TarFile], object] | None = None
) -> bytes:
    """Return a gzipped tar of ``files``; ``extra`` may add members of its own (links, traversal)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
        if extra is not None:
            extra(archive)
    return gzip.compress(buffer.getvalue())


def rewrite_bundle(source: Path, output: Path, edit: Callable[[dict[str, bytes]], object]) -> Path:
    """Copy a bundle archive; ``edit`` may change its {name: content} files (signatures kept)."""
    files = bundle_files(source.read_bytes())
    edit(files)
    output.write_bytes(pack_bundle(files))
    return output


@contextlib.asynccontextmanager
async def running_opa(
    bundle: Path, keys: SigningKeys | None, **kwargs: Any
) -> AsyncIterator[ManagedOpa]:
    """Run a ManagedOpa on ``bundle`` (verified with ``keys.public``) and stop it afterwards."""
    managed = ManagedOpa(
        find_tool("opa"),
        bundle,
        verification_key=keys.public if keys else None,
        startup_timeout_s=kwargs.pop("startup_timeout_s", 20.0),
        **kwargs,
    )
    async with managed:
        yield managed


@pytest.fixture(scope="session")
def opa_binary() -> Path:
    """Return the pinned opa binary."""
    return find_tool("opa")


@pytest.fixture(scope="session")
def opa_keys(tmp_path_factory: pytest.TempPathFactory) -> SigningKeys:
    """Return one signing key pair shared by the session (RSA generation is the slow part)."""
    private, public = generate_keypair(tmp_path_factory.mktemp("opa-keys"))
    return SigningKeys(private, public)


@pytest.fixture
def opa_source(tmp_path: Path) -> Path:
    """Return a fresh small policy source tree."""
    return write_source_tree(tmp_path / "source")


@pytest.fixture
def opa_bundle(opa_source: Path, opa_keys: SigningKeys, tmp_path: Path) -> BuiltBundle:
    """Return a signed bundle of :func:`opa_source`."""
    return build_test_bundle(opa_source, opa_keys, tmp_path / "out" / "bundle.tar.gz")


@pytest.fixture
async def opa_server(opa_bundle: BuiltBundle, opa_keys: SigningKeys) -> AsyncIterator[ManagedOpa]:
    """Yield a ready ManagedOpa serving :func:`opa_bundle`; stopped after the test."""
    async with running_opa(opa_bundle.path, opa_keys) as managed:
        yield managed


@pytest.fixture
async def opa_engine(opa_server: ManagedOpa) -> AsyncIterator[OpaEngine]:
    """Yield an OpaEngine on :func:`opa_server` (5 s deadline); closed after the test."""
    engine = OpaEngine(opa_server.url, timeout_s=5.0, token=opa_server.token)
    try:
        yield engine
    finally:
        await engine.close()

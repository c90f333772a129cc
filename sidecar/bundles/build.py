"""Builds signed bundles from rego/ and layered data with the real ``opa build``; verifies them.

Layout read from ``source_dir``: every ``.rego`` under ``rego/replication`` and ``rego/system``
except ``*_test.rego`` (``rego/inventory`` holds conftest policies and never ships), and data files
(``data.json``/``data.yaml``) under ``bundles/default`` placed by directory = data path. Each
``data_dirs`` entry, then ``extra_data``, is merged over that: objects key by key, other values
replace. The merged data is checked by :func:`find_rule_problems` before OPA ever sees it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from sidecar.bundles.chains import find_rule_problems
from sidecar.errors import BundleError
from sidecar.tools import OPA_CAPABILITIES, find_tool, sandbox_env

__all__ = [
    "BUNDLE_ROOTS",
    "BuiltBundle",
    "BundleInfo",
    "build_bundle",
    "load_data_dir",
    "merge_data",
    "verify_bundle",
]

BUNDLE_ROOTS: tuple[str, ...] = ("replication", "system")
_POLICY_DIRS = ("replication", "system")
_DATA_FILES = ("data.json", "data.yaml", "data.yml")
_SIGNING_ALG = "RS256"
_OPA_TIMEOUT_S = 120.0


@dataclass(frozen=True, slots=True)
class BuiltBundle:
    """A bundle written by :func:`build_bundle`; ``digest`` is ``sha256:<hex>`` of the archive."""

    path: Path
    revision: str
    digest: str
    size: int
    files: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BundleInfo:
    """What :func:`verify_bundle` learned from a bundle whose signature OPA accepted."""

    path: Path
    revision: str
    files: tuple[str, ...]
    digest: str
    roots: tuple[str, ...] = ()


def build_bundle(
    *,
    source_dir: Path,
    output: Path,
    signing_key: Path,
    revision: str | None = None,
    data_dirs: Sequence[Path] = (),
    extra_data: Mapping[str, Any] | None = None,
    opa_binary: Path | None = None,
) -> BuiltBundle:
    """Stage, check, build and sign a bundle at ``output``; raise BundleError listing every problem.

    ``extra_data`` maps data paths (``"replication/legacy"``) to values merged last. Without
    ``revision`` it is ``<UTC yyyymmddTHHMMSSZ>-<12 hex of the content hash>``, so equal sources
    share the hash part. ``output`` is replaced atomically: a failed build leaves it untouched.
    """
    opa = opa_binary or find_tool("opa")
    if not signing_key.is_file():
        raise BundleError(f"signing key {signing_key} does not exist")
    policies = _policy_files(source_dir)
    data = load_data_dir(source_dir / "bundles" / "default")
    for extra_dir in data_dirs:
        if not extra_dir.is_dir():
            raise BundleError(f"data directory {extra_dir} does not exist")
        data = merge_data(data, load_data_dir(extra_dir))
    for data_path, value in (extra_data or {}).items():
        data = merge_data(data, _place(data_path.strip("/").split("/"), value))
    problems = [
        f"data root {key!r} is outside the bundle roots {list(BUNDLE_ROOTS)}"
        for key in data
        if key not in BUNDLE_ROOTS
    ]
    problems += find_rule_problems(data)
    if problems:
        raise BundleError(f"bundle from {source_dir} rejected", tuple(problems))

    data_bytes = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    content = hashlib.sha256()
    for name in sorted(policies):
        content.update(f"{name}\0{len(policies[name])}\0".encode() + policies[name])
    content.update(b"data.json\0" + data_bytes)
    content_hash = content.hexdigest()
    now = datetime.now(UTC)
    revision = revision or f"{now:%Y%m%dT%H%M%SZ}-{content_hash[:12]}"
    if not revision.strip():
        raise BundleError("bundle revision must not be blank")
    manifest = {
        "revision": revision,
        "roots": list(BUNDLE_ROOTS),
        "metadata": {
            "built_at": now.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "source": str(source_dir.resolve()),
            "data_dirs": [str(d.resolve()) for d in data_dirs],
            "content_sha256": content_hash,
        },
    }
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-stage-") as stage_dir:
        stage = Path(stage_dir)
        for name, body in policies.items():
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            (stage / name).write_bytes(body)
        (stage / "data.json").write_bytes(data_bytes)
        (stage / ".manifest").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        fd, partial = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        os.close(fd)
        try:
            # cwd=stage and "-b ." so archive paths (and OPA's error locations) are "replication/…".
            _run_opa(
                [
                    str(opa),
                    "build",
                    "-b",
                    ".",
                    "--revision",
                    revision,
                    "--signing-key",
                    str(signing_key.resolve()),
                    "--signing-alg",
                    _SIGNING_ALG,
                    # The sandbox: a policy calling http.send, opa.runtime… does not build.
                    "--capabilities",
                    str(OPA_CAPABILITIES),
                    "-o",
                    partial,
                ],
                cwd=stage,
                failure=f"opa build failed for {source_dir} (policy paths are relative to rego/)",
            )
            os.chmod(partial, 0o644)  # mkstemp's 0600 would hide a public artifact from servers
            os.replace(partial, output)
        finally:
            Path(partial).unlink(missing_ok=True)
    raw = output.read_bytes()
    _, files = _read_archive(raw, output)
    return BuiltBundle(output, revision, _digest(raw), len(raw), files)


def verify_bundle(path: Path, verification_key: Path, opa_binary: Path | None = None) -> BundleInfo:
    """Verify ``path``'s signature with the real OPA; BundleError if unsigned/tampered/wrong key.

    The archive is read once and the same bytes are verified and inspected, so a file swapped
    in between cannot pass as verified.
    """
    opa = opa_binary or find_tool("opa")
    if not path.is_file():
        raise BundleError(f"bundle {path} does not exist")
    if not verification_key.is_file():
        raise BundleError(f"verification key {verification_key} does not exist")
    raw = path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="bundle-verify-") as work:
        copy = Path(work) / "bundle.tar.gz"
        copy.write_bytes(raw)
        # `opa build` verifies .signatures.json (every file's hash, key, algorithm) before loading
        # a bundle it is given; `opa inspect` would not verify anything.
        _run_opa(
            [
                str(opa),
                "build",
                "-b",
                str(copy),
                "--verification-key",
                str(verification_key.resolve()),
                "--signing-alg",
                _SIGNING_ALG,
                # A signed bundle that calls a sandboxed builtin is refused here too.
                "--capabilities",
                str(OPA_CAPABILITIES),
                "-o",
                str(Path(work) / "verified.tar.gz"),
            ],
            cwd=Path(work),
            failure=f"bundle {path} failed signature verification",
        )
    manifest, files = _read_archive(raw, path)
    roots = manifest.get("roots", [])
    return BundleInfo(
        path=path,
        revision=str(manifest.get("revision", "")),
        files=files,
        digest=_digest(raw),
        roots=tuple(str(r) for r in roots) if isinstance(roots, list) else (),
    )


def _policy_files(source_dir: Path) -> dict[str, bytes]:
    """Return bundle path → content of every shipped policy (no tests, no conftest policies)."""
    rego_dir = source_dir / "rego"
    files: dict[str, bytes] = {}
    for sub in _POLICY_DIRS:
        for path in sorted((rego_dir / sub).rglob("*.rego")):
            if path.is_file() and not path.name.endswith("_test.rego"):
                files[path.relative_to(rego_dir).as_posix()] = path.read_bytes()
    if not any(name.startswith("replication/") for name in files):
        raise BundleError(f"no policies found under {rego_dir / 'replication'}")
    return files


def load_data_dir(root: Path) -> dict[str, Any]:
    """Merge every data file under ``root`` at the data path of its directory (parents first)."""
    merged: dict[str, Any] = {}
    if not root.is_dir():
        return merged
    found = [p for name in _DATA_FILES for p in root.rglob(name) if p.is_file()]
    for path in sorted(found, key=lambda p: (len(p.parts), p.as_posix())):
        try:
            text = path.read_text()
            value = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise BundleError(f"data file {path} is not valid: {exc}") from exc
        parts = [p for p in path.parent.relative_to(root).parts if p]
        if not parts and not isinstance(value, dict):
            raise BundleError(f"data file {path} at the data root must hold an object")
        merged = merge_data(merged, _place(parts, value))
    return merged


def _place(parts: Sequence[str], value: Any) -> dict[str, Any]:
    for part in reversed(parts):
        value = {part: value}
    if not isinstance(value, dict):
        raise BundleError("data at the root of the data document must be an object")
    return value


def merge_data(base: Any, over: Any) -> Any:
    """Return ``over`` merged onto ``base``: objects key by key, anything else replaced."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = merge_data(merged[key], value) if key in merged else value
        return merged
    return over


def _run_opa(args: list[str], *, cwd: Path, failure: str) -> None:
    try:
        # errors="replace": OPA quotes the offending source, which need not be UTF-8.
        done = subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=_OPA_TIMEOUT_S,
            check=False,
            env=sandbox_env(),
        )
    except subprocess.TimeoutExpired as exc:
        raise BundleError(f"{failure}: opa did not finish within {_OPA_TIMEOUT_S:.0f}s") from exc
    except OSError as exc:
        raise BundleError(f"{failure}: cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr + done.stdout).strip().splitlines()
        raise BundleError(f"{failure} (opa exit {done.returncode})", tuple(lines[-40:]))


def _read_archive(raw: bytes, path: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    """Return the manifest and the sorted file names of a bundle archive."""
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            files = tuple(sorted(m.name.lstrip("/") for m in members))
            manifest: dict[str, Any] = {}
            for member in members:
                if member.name.lstrip("/") == ".manifest":
                    handle = archive.extractfile(member)
                    loaded = json.load(handle) if handle is not None else {}
                    manifest = loaded if isinstance(loaded, dict) else {}
    # EOFError: truncated gzip; zlib.error: corrupt deflate data; RecursionError: a manifest
    # nested deeper than the JSON parser goes (ValueError covers the rest of bad JSON).
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, RecursionError) as exc:
        raise BundleError(f"{path} is not a readable bundle archive: {exc}") from exc
    return manifest, files


def _digest(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()

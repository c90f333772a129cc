"""Reads a submitted bundle archive defensively: size limits, safe member names, regular files only.

A bundle that arrives over the admin API or the CLI is untrusted until validated. Nothing is ever
extracted by ``tarfile`` itself: members are read into memory one by one, so a ``../`` name, an
absolute path outside the bundle, a symlink, a device or a gzip bomb is reported instead of
touching the filesystem. OPA writes member names with a leading ``/``; that alone is fine.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

__all__ = [
    "MANIFEST",
    "SIGNATURES",
    "ArchiveProblem",
    "BundleArchive",
    "digest_of",
    "is_test_file",
    "read_archive",
    "write_files",
]

MANIFEST = ".manifest"
SIGNATURES = ".signatures.json"


@dataclass(frozen=True, slots=True)
class ArchiveProblem:
    """One reason an archive cannot be read safely: which check, which member, what is wrong."""

    check: str
    location: str
    message: str


@dataclass(frozen=True, slots=True)
class BundleArchive:
    """A bundle read into memory: ``files`` maps a normalised member name to its bytes."""

    raw: bytes
    digest: str
    files: Mapping[str, bytes] = field(default_factory=dict)
    problems: tuple[ArchiveProblem, ...] = ()

    @property
    def readable(self) -> bool:
        """Return whether the archive could be read completely and safely."""
        return not self.problems

    def manifest(self) -> dict[str, Any]:
        """Return the parsed ``.manifest`` ({} when absent or not a JSON object)."""
        try:
            loaded = json.loads(self.files.get(MANIFEST, b"{}"))
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json parses
            return {}
        return loaded if isinstance(loaded, dict) else {}

    @property
    def revision(self) -> str:
        """Return the ``.manifest`` revision ("" when there is none)."""
        return str(self.manifest().get("revision", "") or "")

    @property
    def signed(self) -> bool:
        """Return whether the archive carries a ``.signatures.json`` (verified elsewhere)."""
        return SIGNATURES in self.files


def digest_of(raw: bytes) -> str:
    """Return ``sha256:<hex>`` of ``raw``."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def is_test_file(name: str) -> bool:
    """Return whether ``name`` is a Rego test file (never shipped in a served bundle)."""
    return name.endswith("_test.rego")


def read_archive(
    raw: bytes, *, max_bytes: int, max_unpacked_bytes: int, limits_from: str = ""
) -> BundleArchive:
    """Read ``raw`` (a gzipped tar) within the limits; every problem found is in ``problems``.

    ``limits_from`` is the config section the limits come from (``policy.admin``): a refusal
    names the key to raise.
    """
    digest = digest_of(raw)
    if len(raw) > max_bytes:
        problem = ArchiveProblem(
            "size",
            "bundle",
            f"archive is {len(raw)} bytes, over the limit of {max_bytes} bytes"
            + _key(limits_from, "max_bundle_bytes"),
        )
        return BundleArchive(raw, digest, problems=(problem,))
    if not raw:
        return BundleArchive(raw, digest, problems=(ArchiveProblem("archive", "bundle", "empty"),))
    problems: list[ArchiveProblem] = []
    files: dict[str, bytes] = {}
    unpacked = 0
    try:
        # Decompress with a cap first: tarfile would inflate a bomb before any member is seen.
        inflated = _inflate(raw, max_unpacked_bytes)
        if inflated is None:
            problem = ArchiveProblem(
                "size",
                "bundle",
                f"archive unpacks to more than {max_unpacked_bytes} bytes"
                + _key(limits_from, "max_unpacked_bytes"),
            )
            return BundleArchive(raw, digest, problems=(problem,))
        with tarfile.open(fileobj=io.BytesIO(inflated), mode="r:") as archive:
            for member in archive:
                name = _safe_name(member, problems)
                if name is None:
                    continue
                if name in files:
                    problems.append(ArchiveProblem("archive", name, "member appears twice"))
                    continue
                handle = archive.extractfile(member)
                body = handle.read() if handle is not None else b""
                unpacked += len(body)
                files[name] = body
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        problems.append(ArchiveProblem("archive", "bundle", f"not a gzipped tar archive: {exc}"))
    return BundleArchive(raw, digest, files, tuple(problems))


def _key(section: str, name: str) -> str:
    return f" ({section}.{name})" if section else ""


def _inflate(raw: bytes, limit: int) -> bytes | None:
    """Return the gunzipped bytes, or None when they exceed ``limit`` (decompressed in steps)."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    data = raw
    while data:
        out += decompressor.decompress(data, limit + 1 - len(out))
        if len(out) > limit:
            return None
        data = decompressor.unconsumed_tail
        if decompressor.eof:
            # Concatenated gzip members are legal; OPA's archives are a single member.
            rest = decompressor.unused_data
            if not rest:
                break
            decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
            data = rest
    if not decompressor.eof:
        raise OSError("truncated gzip stream")
    return bytes(out)


def _safe_name(member: tarfile.TarInfo, problems: list[ArchiveProblem]) -> str | None:
    """Return the member's bundle path, or None (with a problem unless it is a directory)."""
    if member.isdir():
        return None
    raw_name = member.name
    if not member.isfile():
        kind = "symlink" if member.issym() else "hard link" if member.islnk() else "special file"
        problems.append(
            ArchiveProblem("archive", raw_name, f"{kind} members are not allowed in a bundle")
        )
        return None
    path = PurePosixPath(raw_name.lstrip("/"))
    if not path.parts or ".." in path.parts or "\\" in raw_name or "\x00" in raw_name:
        problems.append(
            ArchiveProblem("archive", raw_name, "path escapes the bundle (.. or empty name)")
        )
        return None
    return path.as_posix().removeprefix("./")


def write_files(files: Mapping[str, bytes], root: Path) -> None:
    """Write already-checked ``files`` under ``root`` (names come from :func:`read_archive`)."""
    base = root.resolve()
    for name, body in files.items():
        target = (base / name).resolve()
        if base not in target.parents:  # defence in depth: read_archive already refused these
            raise ValueError(f"{name!r} escapes {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)

"""Signs an existing bundle (archive or directory) with the real ``opa build`` (``bundle sign``).

An archive is unpacked (its old ``.signatures.json`` dropped), then ``opa build`` rebuilds it and
writes a fresh signature over every file. Re-building instead of ``opa sign`` on a directory
keeps the output a single archive, the unit every store and OPA deal in.
"""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.publish import bundle_from_file
from sidecar.errors import BundleError
from sidecar.tools import OPA_CAPABILITIES, sandbox_env

__all__ = ["sign_bundle"]

_TIMEOUT_S = 120.0


def sign_bundle(
    source: Path, output: Path, *, signing_key: Path, opa_binary: Path, revision: str | None = None
) -> BuiltBundle:
    """Write ``source`` (a .tar.gz bundle or a bundle directory) signed with ``signing_key``.

    The revision is ``revision`` or the one in the source's ``.manifest``. ``output`` is replaced
    atomically; a failure leaves it untouched. BundleError quotes OPA's complaint.
    """
    if not signing_key.is_file():
        raise BundleError(f"signing key {signing_key} does not exist")
    output = output.resolve()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bundle-sign-") as work:
        if source.is_dir():
            stage = source.resolve()
        elif source.is_file():
            stage = Path(work) / "stage"
            _unpack(source, stage)
        else:
            raise BundleError(f"bundle {source} does not exist")
        partial = Path(work) / "signed.tar.gz"
        args = [str(opa_binary), "build", "-b", ".", "--signing-key", str(signing_key.resolve()),
                "--signing-alg", "RS256", "--capabilities", str(OPA_CAPABILITIES),
                "-o", str(partial)]  # fmt: skip
        if revision:
            args += ["--revision", revision]
        try:
            # errors="replace": OPA quotes the offending source, which need not be UTF-8.
            done = subprocess.run(
                args,
                cwd=stage,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=_TIMEOUT_S,
                check=False,
                env=sandbox_env(),
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BundleError(f"cannot run {opa_binary} to sign {source}: {exc}") from exc
        if done.returncode != 0:
            lines = (done.stderr + done.stdout).strip().splitlines()
            raise BundleError(f"opa build could not sign {source}", tuple(lines[-40:]))
        os.chmod(partial, 0o644)
        # Same filesystem as output only by luck; copy into place beside it, then rename.
        fd, staged = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(partial.read_bytes())
            os.chmod(staged, 0o644)
            os.replace(staged, output)
        finally:
            Path(staged).unlink(missing_ok=True)
    return bundle_from_file(output)


def _unpack(archive_path: Path, stage: Path) -> None:
    """Extract regular files only, refusing names that would land outside ``stage``."""
    try:
        raw = archive_path.read_bytes()
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as archive:
            for member in archive.getmembers():
                if not member.isfile():
                    continue
                name = PurePosixPath(member.name.lstrip("/"))
                if ".." in name.parts or not name.parts:
                    raise BundleError(f"{archive_path}: unsafe path {member.name!r} in archive")
                if str(name) == ".signatures.json":
                    continue  # replaced by the new signature
                handle = archive.extractfile(member)
                target = stage.joinpath(*name.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(handle.read() if handle is not None else b"")
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"{archive_path} is not a readable bundle archive: {exc}") from exc

"""Signs a validated bundle and delivers it: to the configured store, and to the managed OPA.

The store is what every OPA of the fleet polls (S3, GCS or the built-in HTTP bundle server). A
managed OPA that serves a locally built bundle (no ``policy.bundle.service``) is reloaded with the
new bundle as well; ``ManagedOpa.reload`` activates it on a spare OPA first, so a bundle OPA
refuses never replaces the one serving.
"""

from __future__ import annotations

import asyncio
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sidecar.bundles import sign_bundle
from sidecar.bundles.archive import SIGNATURES, BundleArchive, digest_of, is_test_file, write_files
from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.publish import publisher_for
from sidecar.errors import BundleRejected, ConfigError
from sidecar.policy.managed import ManagedOpa

__all__ = ["BundleDelivery", "Delivered", "StoreTarget"]

_LOCAL = "local"


@dataclass(frozen=True, slots=True)
class StoreTarget:
    """Where published bundles go: a ``bundle publish --to`` URL and how to reach it."""

    url: str
    endpoint_url: str | None = None
    region: str | None = None
    token: str | None = None
    timeout_s: float = 60.0


@dataclass(frozen=True, slots=True)
class Delivered:
    """A bundle as it was delivered: its bytes, digest, revision and where it went."""

    raw: bytes
    digest: str
    revision: str
    location: str
    signed_by_sidecar: bool


class BundleDelivery:
    """Signs (when needed) and delivers bundles to the store and/or the managed OPA."""

    def __init__(
        self,
        *,
        opa_binary: Path,
        signing_key: Path | None,
        work_dir: Path,
        store: StoreTarget | None,
        managed: ManagedOpa | None,
    ) -> None:
        self._opa = opa_binary
        self._signing_key = signing_key
        self._work = work_dir
        self._store = store
        self._managed = managed

    @property
    def location(self) -> str:
        """Return where bundles go: the store URL, or ``local`` (the managed OPA only)."""
        return self._store.url if self._store else _LOCAL

    def needs_signing(self, archive: BundleArchive, verified: bool, revision: str | None) -> bool:
        """Return whether the upload must be (re-)signed by the sidecar before delivery."""
        carries_tests = any(is_test_file(name) for name in archive.files)
        renamed = bool(revision) and revision != archive.revision
        return not verified or carries_tests or renamed

    async def sign(self, archive: BundleArchive, revision: str | None) -> tuple[bytes, str]:
        """Return the archive without test files, signed with the sidecar's key, and its revision."""
        if self._signing_key is None:
            raise BundleRejected(
                "bundle rejected",
                (
                    "signature: .signatures.json: the sidecar has no signing key "
                    "(policy.bundle.signing_key); upload a bundle signed with the key matching "
                    "policy.bundle.verification_key, without *_test.rego files",
                ),
            )
        files = {
            name: body
            for name, body in archive.files.items()
            if name != SIGNATURES and not is_test_file(name)
        }
        key = self._signing_key

        def run() -> tuple[bytes, str]:
            with tempfile.TemporaryDirectory(prefix="admin-sign-", dir=self._ensure_work()) as work:
                stage = Path(work) / "stage"
                write_files(files, stage)
                signed = sign_bundle(
                    stage, Path(work) / "signed.tar.gz", signing_key=key,
                    opa_binary=self._opa, revision=revision or None,
                )  # fmt: skip
                return signed.path.read_bytes(), signed.revision

        return await asyncio.to_thread(run)

    async def deliver(self, raw: bytes, revision: str, files: tuple[str, ...]) -> Delivered:
        """Publish exactly ``raw`` to the store, then activate it on the managed OPA (if local)."""
        if self._store is None and self._managed is None:
            raise ConfigError(
                "policy.admin.publish.to",
                "nowhere to publish: set a store (or policy.bundle.service), or let the sidecar "
                "run its own OPA",
            )
        digest = digest_of(raw)
        path = self._ensure_work() / f"{digest.removeprefix('sha256:')}.tar.gz"
        await asyncio.to_thread(path.write_bytes, raw)
        bundle = BuiltBundle(path, revision, digest, len(raw), files)
        if self._store is not None:
            store = self._store
            publisher = publisher_for(
                store.url, token=store.token, endpoint_url=store.endpoint_url,
                region=store.region, timeout_s=store.timeout_s,
            )  # fmt: skip
            await asyncio.to_thread(publisher.publish, bundle)
        if self._managed is not None:
            await self._managed.reload(path)
        # The managed OPA restarts from `path` if it dies; older archives are no longer needed.
        for old in self._work.glob("*.tar.gz"):
            if old != path:
                old.unlink(missing_ok=True)
        return Delivered(raw, digest, revision, self.location, signed_by_sidecar=False)

    def _ensure_work(self) -> Path:
        self._work.mkdir(parents=True, exist_ok=True)
        return self._work

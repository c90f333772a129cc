"""Validates a bundle before it is published or activated, reporting every problem at once.

Checks, in order (later ones are skipped only when the archive itself cannot be read safely):
size limits and safe members (``archive``/``size``), the ``.manifest`` (revision, roots inside
``replication``/``system``), the signature (``signature``: a bundle that carries one must verify
with the configured key; ``require_signature`` refuses unsigned ones), the data files (``data``)
against the data schema (``schema``), rule ids and chain cycles (``rules``), registries and
tenants the inventory lacks (``references``), tenant rules whose ``destination_repository``
leaves the tenant's ``policy.tenancy.prefixes`` (``tenancy``), ``opa check --strict``
(``opa-check``), the Rego tests (``opa-test``) and the conftest inventory checks (``inventory``).
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sidecar.bundles._validate_data import DataProblem, Inventory, check_data, load_data
from sidecar.bundles._validate_tools import ToolPaths, conftest_inventory, opa_check, opa_test
from sidecar.bundles.archive import (
    MANIFEST,
    SIGNATURES,
    BundleArchive,
    is_test_file,
    read_archive,
)
from sidecar.bundles.build import BUNDLE_ROOTS, verify_bundle
from sidecar.config import Config
from sidecar.errors import BundleError, BundleRejected
from sidecar.tools import find_tool

__all__ = [
    "DEFAULT_MAX_BUNDLE_BYTES",
    "DEFAULT_MAX_UNPACKED_BYTES",
    "BundleValidator",
    "Inventory",
    "Problem",
    "ToolPaths",
    "ValidationReport",
    "inventory_of",
    "validator_for",
]

DEFAULT_MAX_BUNDLE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_UNPACKED_BYTES = 64 * 1024 * 1024
_TEST_DIRS = ("replication", "system")


@dataclass(frozen=True, slots=True)
class Problem:
    """One validation finding: the check that failed, where (file[:line], path, rule), and why."""

    check: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.check}: {self.location}: {self.message}"


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """The outcome of validating one bundle; ``valid`` exactly when ``problems`` is empty."""

    digest: str
    revision: str
    files: tuple[str, ...]
    signed: bool
    tests_run: int
    problems: tuple[Problem, ...]
    archive: BundleArchive

    @property
    def valid(self) -> bool:
        """Return whether the bundle passed every check."""
        return not self.problems

    def raise_if_invalid(self, what: str = "bundle") -> None:
        """Raise BundleRejected listing every problem, unless the bundle is valid."""
        if self.problems:
            count = len(self.problems)
            raise BundleRejected(
                f"{what} rejected: {count} problem{'s' if count > 1 else ''}",
                tuple(str(p) for p in self.problems),
            )

    def to_json(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "valid": self.valid,
            "revision": self.revision,
            "digest": self.digest,
            "signed": self.signed,
            "tests_run": self.tests_run,
            "files": list(self.files),
            "problems": [str(p) for p in self.problems],
        }


class BundleValidator:
    """Runs every check on bundle bytes with the real ``opa`` and ``conftest`` (blocking)."""

    def __init__(
        self,
        *,
        tools: ToolPaths | Callable[[], ToolPaths],
        verification_key: Path,
        source_dir: Path,
        inventory: Inventory | None,
        tenant_prefixes: Mapping[str, str] | None = None,
        max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        limits_from: str = "",
    ) -> None:
        # Looked up on first use: a sidecar that never validates needs no conftest installed.
        self._tool_source = tools
        self._tool_paths = tools if isinstance(tools, ToolPaths) else None
        self._key = verification_key
        self._inventory = inventory
        # policy.tenancy.prefixes: a tenant's rules stay inside its own repository prefixes.
        self._prefixes = dict(tenant_prefixes or {})
        self._max_bytes = max_bytes
        self._max_unpacked = max_unpacked_bytes
        # The config section the size limits come from ("policy.admin"), named in refusals.
        self._limits_from = limits_from
        self._inventory_policy = source_dir / "rego" / "inventory"
        # The checkout's tests and default data, read once (see _validate_tools.opa_test).
        self._tests = _read_tree(source_dir / "rego", _TEST_DIRS, is_test_file)
        self._default_data = _read_tree(
            source_dir / "bundles" / "default", _TEST_DIRS, lambda n: n.endswith("data.json")
        )

    def _tools(self) -> ToolPaths:
        if self._tool_paths is None:
            source = self._tool_source
            self._tool_paths = source if isinstance(source, ToolPaths) else source()
        return self._tool_paths

    def prepare(self) -> None:
        """Look up the tools now (ToolMissing if absent), e.g. before handing this to a process."""
        self._tools()

    def __getstate__(self) -> dict[str, Any]:
        # Picklable for worker processes: the tool lookup may be a closure, so send its result.
        state = dict(self.__dict__)
        state["_tool_source"] = state["_tool_paths"] = self._tools()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def reader(self) -> Callable[[bytes], BundleArchive]:
        """Return :meth:`read` as a picklable function (for worker processes)."""
        return functools.partial(
            read_archive,
            max_bytes=self._max_bytes,
            max_unpacked_bytes=self._max_unpacked,
            limits_from=self._limits_from,
        )

    @property
    def max_bytes(self) -> int:
        """Return the largest bundle archive accepted, in bytes."""
        return self._max_bytes

    def read(self, raw: bytes) -> BundleArchive:
        """Read ``raw`` within the size limits (no other check): for comparing bundles."""
        return read_archive(
            raw,
            max_bytes=self._max_bytes,
            max_unpacked_bytes=self._max_unpacked,
            limits_from=self._limits_from,
        )

    def validate(
        self,
        raw: bytes,
        *,
        require_signature: bool = False,
        archive: BundleArchive | None = None,
    ) -> ValidationReport:
        """Check ``raw`` (a bundle .tar.gz) and return every problem found.

        ``archive`` is ``raw`` already read by :meth:`read` (it is not read twice).
        """
        if archive is None or archive.raw != raw:
            archive = self.read(raw)
        if not archive.readable:
            problems = tuple(Problem(p.check, p.location, p.message) for p in archive.problems)
            return ValidationReport(archive.digest, "", (), False, 0, problems, archive)
        found: list[DataProblem] = []
        files = dict(archive.files)
        manifest = archive.manifest()
        roots = self._manifest(archive, manifest, found)
        signed = self._signature(archive, require_signature, found)
        data = load_data(files, found)
        found += check_data(data, roots, self._inventory, self._prefixes)
        checked, unparsable = opa_check(self._tools().opa, files)
        found += checked
        tests_run, failures = opa_test(
            self._tools().opa, files, self._tests, self._default_data, unparsable
        )
        found += failures
        if self._inventory is not None:
            found += conftest_inventory(
                self._tools().conftest, self._inventory_policy, self._inventory.document
            )
        names = tuple(sorted(files))
        problems = tuple(Problem(p.check, p.location, p.message) for p in found)
        return ValidationReport(
            archive.digest, archive.revision, names, signed, tests_run, problems, archive
        )

    def _manifest(
        self, archive: BundleArchive, manifest: dict[str, Any], found: list[DataProblem]
    ) -> tuple[str, ...]:
        if MANIFEST not in archive.files:
            found.append(DataProblem("manifest", MANIFEST, "missing: the bundle has no .manifest"))
            return BUNDLE_ROOTS
        if not archive.revision.strip():
            found.append(DataProblem("manifest", MANIFEST, "no revision"))
        roots = manifest.get("roots")
        if not isinstance(roots, list) or not roots:
            # No roots = every path: the bundle would own data.sensitive and the Data API roots.
            found.append(
                DataProblem("manifest", MANIFEST, f"roots must list some of {list(BUNDLE_ROOTS)}")
            )
            return BUNDLE_ROOTS
        outside = [r for r in roots if r not in BUNDLE_ROOTS]
        if outside:
            found.append(
                DataProblem(
                    "manifest", MANIFEST, f"roots {outside} are outside {list(BUNDLE_ROOTS)}"
                )
            )
        return tuple(str(r) for r in roots if r in BUNDLE_ROOTS)

    def _signature(self, archive: BundleArchive, require: bool, found: list[DataProblem]) -> bool:
        if SIGNATURES not in archive.files:
            if require:
                found.append(
                    DataProblem("signature", SIGNATURES, "missing: the bundle is not signed")
                )
            return False
        with tempfile.TemporaryDirectory(prefix="bundle-validate-") as work:
            path = Path(work) / "bundle.tar.gz"
            path.write_bytes(archive.raw)
            try:
                verify_bundle(path, self._key, opa_binary=self._tools().opa)
            except BundleError as exc:
                reason = "; ".join(exc.problems[-3:]) or exc.message
                found.append(
                    DataProblem(
                        "signature",
                        SIGNATURES,
                        f"does not verify with {self._key.name} (wrong signing key or "
                        f"tampered files): {reason}",
                    )
                )
                return False
        return True


def inventory_of(config: Config) -> Inventory:
    """Return the inventory bundle data may refer to, as loaded from ``config``."""
    registries = []
    for facts in config.inventory():
        fact = facts.to_json()
        fact.pop("healthy", None)  # live state, not inventory
        registries.append(fact)
    tenants = config.policy.tenancy.tenants
    return Inventory(
        registries=frozenset(r["name"] for r in registries),
        tenants=frozenset(tenants),
        document={"registries": registries, "policy": {"tenancy": {"tenants": list(tenants)}}},
    )


def validator_for(
    config: Config,
    verification_key: Path,
    *,
    max_bytes: int = DEFAULT_MAX_BUNDLE_BYTES,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
    limits_from: str = "",
) -> BundleValidator:
    """Return a validator using the configured tools, checkout and inventory."""
    return BundleValidator(
        tools=lambda: ToolPaths(find_tool("opa", config.policy.opa.binary), find_tool("conftest")),
        verification_key=verification_key,
        source_dir=Path(config.policy.bundle.source_dir),
        # An empty inventory (no config) names nothing: reference checks would refuse everything.
        inventory=inventory_of(config) if config.registries else None,
        tenant_prefixes=config.policy.tenancy.prefixes,
        max_bytes=max_bytes,
        max_unpacked_bytes=max_unpacked_bytes,
        limits_from=limits_from,
    )


def _read_tree(
    root: Path, subdirs: tuple[str, ...], keep: Callable[[str], bool]
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for sub in subdirs:
        for path in sorted((root / sub).rglob("*")) if (root / sub).is_dir() else ():
            if path.is_file() and keep(path.name):
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files

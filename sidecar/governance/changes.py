"""What a new bundle changes compared with the active one: files, data paths, tenants touched.

This is what makes a publish *tenant-scoped*: every difference lies under
``data.replication.tenants.<tenant>`` (added, removed or edited), and no policy file, no other
data and no manifest root differs. Anything else is a *global* change. Test files and the
signature never count; neither does the revision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sidecar.bundles import DataProblem, load_data
from sidecar.bundles.archive import MANIFEST, SIGNATURES, BundleArchive, is_test_file

__all__ = ["BundleChanges", "bundle_changes"]

_TENANTS = ("replication", "tenants")
_MAX_PATHS = 50


@dataclass(frozen=True, slots=True)
class BundleChanges:
    """The difference between two bundles, as the audit log and ``data.system.authz`` see it."""

    files: tuple[str, ...]  # policy/data files added, removed or edited
    data_paths: tuple[str, ...]  # "replication.tenants.acme", "replication.settings.scan"
    tenants: tuple[str, ...]
    global_change: bool

    @property
    def changed(self) -> tuple[str, ...]:
        """Return files then data paths (``data:<path>``): the audit record's changed files."""
        return (*self.files, *(f"data:{p}" for p in self.data_paths))

    def target(self) -> dict[str, Any]:
        """Return the authorisation target: which tenants, whether anything global changes."""
        return {
            "tenants": list(self.tenants),
            "global": self.global_change,
            "changed_files": list(self.changed),
        }


def bundle_changes(old: BundleArchive | None, new: BundleArchive) -> BundleChanges:
    """Compare ``new`` with ``old`` (None: nothing active yet, so everything is global)."""
    if not new.readable:
        return BundleChanges((), (), (), True)
    new_files = _content(new.files)
    old_files = _content(old.files) if old is not None else {}
    files = tuple(
        sorted(n for n in set(new_files) | set(old_files) if new_files.get(n) != old_files.get(n))
    )
    ignored: list[DataProblem] = []  # unreadable data is the validator's to report
    new_data = load_data(new.files, ignored).document
    old_data = load_data(old.files, ignored).document if old is not None else {}
    paths: list[tuple[str, ...]] = []
    _diff(old_data, new_data, (), paths)
    tenants = sorted({p[2] for p in paths if len(p) > 2 and p[:2] == _TENANTS})
    data_files = {n for n in files if _is_data(n)}
    global_change = (
        old is None
        or bool(set(files) - data_files)
        or _roots(old) != _roots(new)
        or any(len(p) < 3 or p[:2] != _TENANTS for p in paths)
    )
    shown = [".".join(p) for p in paths[:_MAX_PATHS]]
    if len(paths) > _MAX_PATHS:
        shown.append(f"… {len(paths) - _MAX_PATHS} more")
    return BundleChanges(files, tuple(shown), tuple(tenants), global_change)


def _content(files: Mapping[str, bytes]) -> dict[str, bytes]:
    return {
        name: body
        for name, body in files.items()
        if name not in (MANIFEST, SIGNATURES) and not is_test_file(name)
    }


def _is_data(name: str) -> bool:
    return name.rsplit("/", 1)[-1] in ("data.json", "data.yaml", "data.yml")


def _roots(archive: BundleArchive) -> list[str]:
    roots = archive.manifest().get("roots")
    return sorted(str(r) for r in roots) if isinstance(roots, list) else []


def _diff(old: Any, new: Any, path: tuple[str, ...], out: list[tuple[str, ...]]) -> None:
    """Collect the paths where ``old`` and ``new`` differ; tenants are compared as a whole."""
    if old == new:
        return
    if isinstance(old, dict) and isinstance(new, dict) and (len(path) < 3 or path[:2] != _TENANTS):
        for key in sorted(set(old) | set(new), key=str):
            _diff(old.get(key), new.get(key), (*path, str(key)), out)
        return
    out.append(path)

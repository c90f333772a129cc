"""What a bundle changes compared with the active one: the scope data.system.authz decides on."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from typing import Any

import pytest

from sidecar.bundles.archive import BundleArchive, read_archive
from sidecar.governance.changes import bundle_changes

BASE: dict[str, Any] = {
    "replication": {
        "settings": {"scan": {"max_age_days": 7}},
        "tenants": {"acme": {"rules": []}, "globex": {"rules": []}},
    },
    "system": {"roles": {"viewer": ["ListRevisions"]}},
}


def _archive(data: dict[str, Any], *, revision: str = "r", roots: list[str] | None = None,
             extra: dict[str, bytes] | None = None) -> BundleArchive:  # fmt: skip
    files = {
        ".manifest": json.dumps(
            {"revision": revision, "roots": roots or ["replication", "system"]}
        ),
        "data.json": json.dumps(data),
        "replication/decision.rego": "package replication\n",
        ".signatures.json": json.dumps({"revision": revision}),
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        items = {k: v.encode() for k, v in files.items()} | (extra or {})
        for name, body in items.items():
            info = tarfile.TarInfo(f"/{name}")
            info.size = len(body)
            archive.addfile(info, io.BytesIO(body))
    return read_archive(gzip.compress(buffer.getvalue()), max_bytes=10**6, max_unpacked_bytes=10**7)


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data = json.loads(json.dumps(BASE))
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("data", "tenants", "global_change", "paths"),
    [
        (_with(("replication", "tenants", "acme", "rules"), [{"id": "x"}]), ("acme",), False,
         ("replication.tenants.acme",)),
        (_with(("replication", "tenants", "globex"), None), ("globex",), False,
         ("replication.tenants.globex",)),
        (_with(("replication", "tenants", "initech"), {"rules": []}), ("initech",), False,
         ("replication.tenants.initech",)),
        (_with(("replication", "settings", "scan", "max_age_days"), 9), (), True,
         ("replication.settings.scan.max_age_days",)),
        (_with(("system", "roles", "viewer"), ["*"]), (), True, ("system.roles.viewer",)),
    ],
)  # fmt: skip
def test_data_changes_are_scoped_to_tenants_or_global(
    data: dict[str, Any], tenants: tuple[str, ...], global_change: bool, paths: tuple[str, ...]
) -> None:
    changes = bundle_changes(_archive(BASE), _archive(data, revision="new"))
    assert (changes.tenants, changes.global_change, changes.data_paths) == (
        tenants, global_change, paths)  # fmt: skip
    assert changes.files == ("data.json",)
    assert changes.target() == {
        "tenants": list(tenants),
        "global": global_change,
        "changed_files": ["data.json", *(f"data:{p}" for p in paths)],
    }


def test_policy_files_and_roots_are_global_tests_revision_and_signature_are_not() -> None:
    same = bundle_changes(
        _archive(BASE), _archive(BASE, revision="other", extra={"replication/x_test.rego": b"t"})
    )
    assert (same.files, same.data_paths, same.global_change) == ((), (), False)
    policy = bundle_changes(
        _archive(BASE), _archive(BASE, extra={"replication/new.rego": b"package replication.n"})
    )
    assert policy.files == ("replication/new.rego",) and policy.global_change
    assert bundle_changes(_archive(BASE), _archive(BASE, roots=["replication"])).global_change


def test_a_tenant_change_beside_a_global_one_is_global() -> None:
    data = _with(("replication", "tenants", "acme", "rules"), [{"id": "x"}])
    data["replication"]["settings"]["scan"]["max_age_days"] = 1
    changes = bundle_changes(_archive(BASE), _archive(data))
    assert changes.tenants == ("acme",) and changes.global_change


def test_the_first_bundle_and_an_unreadable_one_count_as_global() -> None:
    assert bundle_changes(None, _archive(BASE)).global_change
    junk = read_archive(b"not a bundle", max_bytes=100, max_unpacked_bytes=100)
    assert bundle_changes(_archive(BASE), junk).global_change

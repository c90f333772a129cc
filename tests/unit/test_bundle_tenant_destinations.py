"""Issue 15: a tenant's rules may only send images into that tenant's repository prefixes.

The data check of bundle validation (sidecar.bundles._validate_data) on real bundle data files,
with policy.tenancy.prefixes as configured (prefix → tenant; the longest prefix owns a repository).
"""

from __future__ import annotations

import json

import pytest

from sidecar.bundles._validate_data import DataProblem, check_data, load_data

ROOTS = ("replication", "system")
PREFIXES = {"acme/": "acme", "acme-mirror/": "acme", "acme/shared/": "globex", "globex/": "globex"}


def _problems(tenant: str, destination: str) -> list[DataProblem]:
    rules = [{"id": f"{tenant}-r", "set": {"destination_repository": destination}}]
    files = {"replication/tenants/data.json": json.dumps({tenant: {"rules": rules}}).encode()}
    found: list[DataProblem] = []
    data = load_data(files, found)
    return [p for p in [*found, *check_data(data, ROOTS, None, PREFIXES)] if p.check == "tenancy"]


@pytest.mark.parametrize(
    ("tenant", "destination"),
    [
        ("acme", "acme/app"),
        ("acme", "acme-mirror/{repository}"),
        ("acme", "acme/mirror/{repository}-{tag}"),
        ("globex", "acme/shared/app"),  # globex owns the nested prefix
        ("globex", "acme/shared/{repository}"),
        ("initech", "initech-mirror/{repository}"),  # no prefix: anything nobody owns
        ("initech", "mirror/app"),
    ],
)
def test_destinations_inside_the_tenants_namespace_pass(tenant: str, destination: str) -> None:
    assert _problems(tenant, destination) == []


@pytest.mark.parametrize(
    ("tenant", "destination", "reason"),
    [
        (
            "acme",
            "globex/app",
            "outside the tenant's repository prefixes and can reach another tenant's "
            "repositories ('globex/' of tenant 'globex')",
        ),
        ("acme", "globex/{repository}", "outside the tenant's repository prefixes"),
        ("acme", "{repository}", "outside the tenant's repository prefixes"),
        ("acme", "acme/shared/app", "another tenant's repositories ('acme/shared/' of tenant"),
        ("acme", "acme/{repository}", "another tenant's repositories ('acme/shared/' of tenant"),
        ("acme", "acme/../globex/app", "'.' or '..' segments"),
        ("initech", "globex/app", "another tenant's repositories ('globex/' of tenant 'globex')"),
        ("initech", "{repository}", "another tenant's repositories ('acme-mirror/' of tenant"),
        ("initech", "acme{tag}", "another tenant's repositories ('acme-mirror/' of tenant"),
    ],
)
def test_destinations_reaching_other_tenants_are_refused(
    tenant: str, destination: str, reason: str
) -> None:
    (problem,) = _problems(tenant, destination)
    assert problem.location == (
        f"replication/tenants/data.json:replication.tenants.{tenant}.rules.0.set.destination_repository"
    )
    assert (
        f"rule '{tenant}-r' of tenant '{tenant}' sets destination_repository {destination!r}"
        in (problem.message)
    )
    assert reason in problem.message, problem.message
    allowed = "'acme-mirror/', 'acme/'" if tenant == "acme" else "none configured"
    assert f"policy.tenancy.prefixes: {allowed})" in problem.message


def test_no_tenancy_prefixes_means_no_namespace_check() -> None:
    rules = [{"id": "r", "set": {"destination_repository": "{repository}"}}]
    files = {"replication/tenants/data.json": json.dumps({"acme": {"rules": rules}}).encode()}
    data = load_data(files, [])
    assert not [p for p in check_data(data, ROOTS, None, {}) if p.check == "tenancy"]

"""The policy toolchain of ``make policy-check``, step by step, with the real opa/regal/conftest."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.tools import find_tool

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPLICATION = ROOT / "rego" / "replication"
INVENTORY_POLICY = "rego/inventory"
FIXTURES = ROOT / "tests" / "fixtures" / "inventory"
COVERAGE_MIN = 90.0
TIMEOUT_S = 300

# Each bad fixture and the deny message it must produce (docs: rego/inventory/inventory.rego).
BAD_INVENTORIES = {
    "bad-backs-secondary.yaml": 'registry "prod-eu-dr2" backs "prod-eu-dr", which is not a primary',
    "bad-duplicate-name.yaml": 'registry "prod-us": duplicate name',
    "bad-egress-cost.yaml": 'registry "prod-us": egress_cost_per_gb must be a non-negative number',
    "bad-gdpr-string.yaml": '"prod-eu": gdpr must be a boolean (true or false), not the string',
    "bad-missing-environment.yaml": 'registry "prod-us" has no environment',
    "bad-missing-region.yaml": 'registry "prod-us" has no region',
    "bad-role.yaml": 'registry "prod-us": role must be primary or secondary, not "backup"',
    "bad-unknown-primary.yaml": 'registry "prod-eu-dr" backs "prod-eux", which is not a registry',
    "bad-unknown-tenant.yaml": 'registry "initech-prod" is dedicated to unknown tenant "initech"',
}
GOOD_INVENTORIES = ["tests/fixtures/inventory/good.yaml", "tests/cases/sidecar.yaml"]


def _run(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _shipped_coverage(report: dict[str, Any]) -> float:
    """Line coverage of rego/replication without its tests, as the Makefile gate computes it."""
    files = {
        name: counts
        for name, counts in report["files"].items()
        if name.startswith("rego/replication/") and not name.endswith("_test.rego")
    }
    covered = sum(c.get("covered_lines", 0) for c in files.values())
    missed = sum(c.get("not_covered_lines", 0) for c in files.values())
    return 100.0 * covered / (covered + missed)


def test_rego_is_formatted() -> None:
    done = _run(find_tool("opa"), "fmt", "--list", "--fail", "rego")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == ""


def test_format_check_flags_unformatted_rego(tmp_path: Path) -> None:
    messy = tmp_path / "messy.rego"
    messy.write_text("package messy\nimport rego.v1\nallow if {input.x==1}\n")
    done = _run(find_tool("opa"), "fmt", "--list", "--fail", tmp_path)
    assert done.returncode != 0
    assert "messy.rego" in done.stdout


def test_policies_and_default_data_compile_strictly() -> None:
    done = _run(find_tool("opa"), "check", "--strict", "rego", "bundles/default")
    assert done.returncode == 0, done.stdout + done.stderr


def test_regal_finds_no_violations() -> None:
    done = _run(find_tool("regal"), "lint", "--config-file", ".regal/config.yaml", "rego")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No violations found" in done.stdout


def test_every_policy_has_a_test_file_beside_it() -> None:
    policies = {p.stem for p in REPLICATION.glob("*.rego") if not p.stem.endswith("_test")}
    assert {
        "decision",
        "environment",
        "compliance",
        "scan",
        "placement",
        "dr",
        "tenancy",
        "ruleset",
        "legacy",
        "priority",
    } <= policies
    missing = sorted(p for p in policies if not (REPLICATION / f"{p}_test.rego").is_file())
    assert missing == []


def test_rego_unit_tests_pass_in_every_policy_package() -> None:
    done = _run(
        find_tool("opa"),
        "test",
        "--format=json",
        "rego/replication",
        "rego/system",
        "bundles/default",
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr
    results = json.loads(done.stdout)
    assert not [r["name"] for r in results if r.get("fail") or r.get("error")]
    packages = {r["package"] for r in results}
    expected = {
        f"data.replication.{p}_test"
        for p in (
            "environment",
            "compliance",
            "scan",
            "placement",
            "dr",
            "tenancy",
            "ruleset",
            "legacy",
            "priority",
        )
    } | {"data.replication_test", "data.system.authz_test"}
    assert expected <= packages


def test_line_coverage_meets_the_gate() -> None:
    done = _run(
        find_tool("opa"),
        "test",
        "--coverage",
        "--format=json",
        "rego/replication",
        "rego/system",
        "bundles/default",
    )
    assert done.returncode == 0, done.stderr
    assert _shipped_coverage(json.loads(done.stdout)) >= COVERAGE_MIN


def test_conftest_unit_tests_pass() -> None:
    done = _run(find_tool("conftest"), "verify", "--no-color", "--policy", INVENTORY_POLICY)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failures" in done.stdout


@pytest.mark.parametrize("config", GOOD_INVENTORIES)
def test_good_inventory_passes(config: str) -> None:
    done = _run(
        find_tool("conftest"),
        "test",
        "--no-color",
        "--output",
        "json",
        "--policy",
        INVENTORY_POLICY,
        config,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r.get("failures") or [] for r in json.loads(done.stdout)] == [[]]


def test_every_bad_fixture_has_an_expected_message() -> None:
    assert sorted(p.name for p in FIXTURES.glob("bad-*.yaml")) == sorted(BAD_INVENTORIES)


@pytest.mark.parametrize(("fixture", "message"), sorted(BAD_INVENTORIES.items()))
def test_bad_inventory_is_rejected_with_its_reason(fixture: str, message: str) -> None:
    done = _run(
        find_tool("conftest"),
        "test",
        "--no-color",
        "--output",
        "json",
        "--policy",
        INVENTORY_POLICY,
        FIXTURES / fixture,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    messages = [f["msg"] for r in json.loads(done.stdout) for f in r.get("failures") or []]
    assert len(messages) == 1, messages
    assert message in messages[0]


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make, "GNU make is required for the policy-check target"
    tools = {"OPA": "opa", "CONFTEST": "conftest", "REGAL": "regal"}
    overrides = [f"{var}={find_tool(name)}" for var, name in tools.items()]
    return subprocess.run(
        [make, "--no-print-directory", *args, *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_make_policy_check_passes_end_to_end() -> None:
    done = _make("policy-check")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "rego/replication line coverage:" in done.stdout
    for fixture in BAD_INVENTORIES:
        assert f"{fixture}: rejected as expected" in done.stdout
    assert "policy-check: all policy checks passed" in done.stdout


def test_make_coverage_gate_fails_when_the_minimum_is_not_met() -> None:
    done = _make("policy-test", "COVERAGE_MIN=100.1")
    assert done.returncode != 0
    assert "coverage gate failed" in done.stdout

"""The tool checks of bundle validation: ``opa check --strict``, ``opa test`` and conftest.

Each runs the real pinned binary on an unpacked copy of the bundle and turns its report into one
problem per finding, naming the file and line (OPA) or the registry (conftest). Every run is
sandboxed: a scrubbed environment, and OPA gets the sandbox capabilities, so a policy (or a test)
calling ``http.send`` or ``opa.runtime`` is refused by name instead of being run.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sidecar.bundles._validate_data import DataProblem
from sidecar.bundles.archive import is_test_file, write_files
from sidecar.tools import OPA_CAPABILITIES, SANDBOX_REMOVED_BUILTINS, sandbox_env

__all__ = ["ToolPaths", "conftest_inventory", "opa_check", "opa_test"]

_TIMEOUT_S = 120.0
_LOCATION = re.compile(r"^(?P<file>[^\s:]+\.rego):(?P<line>\d+)(?::\d+)?:\s*(?P<msg>.*)$")
_UNDEFINED = re.compile(r"undefined function (?P<name>[\w.]+)")


@dataclass(frozen=True, slots=True)
class ToolPaths:
    """The binaries validation runs."""

    opa: Path
    conftest: Path


def opa_check(opa: Path, files: Mapping[str, bytes]) -> tuple[list[DataProblem], set[str]]:
    """Run ``opa check --strict`` over every Rego file (tests included).

    Return the problems and the files that do not parse. OPA compiles nothing while any file
    fails to parse, so a second pass without those files reports the others' compile errors.
    """
    modules = {name: body for name, body in files.items() if name.endswith(".rego")}
    if not modules:
        return [DataProblem("opa-check", "bundle", "the bundle holds no Rego policy")], set()
    problems = _check(opa, modules)
    unparsable = {p.location.rsplit(":", 1)[0] for p in problems if "rego_parse_error" in p.message}
    rest = {name: body for name, body in modules.items() if name not in unparsable}
    if unparsable and rest:
        seen = {str(p) for p in problems}
        problems += [p for p in _check(opa, rest) if str(p) not in seen]
    return problems, unparsable


def _check(opa: Path, modules: Mapping[str, bytes]) -> list[DataProblem]:
    with tempfile.TemporaryDirectory(prefix="bundle-check-") as work:
        write_files(modules, Path(work))
        done = _run(
            [str(opa), "check", "--strict", "--format", "json", *_capabilities(), "."], Path(work)
        )
    if done.returncode == 0:
        return []
    problems = _opa_errors(done.stdout) or _opa_errors(done.stderr)
    if problems:
        return problems
    text = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
    return [DataProblem("opa-check", "bundle", line) for line in text.splitlines()[:40]]


def opa_test(
    opa: Path,
    files: Mapping[str, bytes],
    fallback_tests: Mapping[str, bytes],
    fallback_data: Mapping[str, bytes],
    unparsable: Collection[str] = (),
) -> tuple[int, list[DataProblem]]:
    """Run the Rego tests; return (tests run, one problem per failing or erroring test).

    A bundle that ships ``*_test.rego`` files is tested as it is (its policies, data and tests).
    Otherwise the checkout's tests run against the bundle's policies with the checkout's default
    data: they pin the policy code, while the bundle's own data is checked by the schema,
    rule-chain and reference checks (operational data may legitimately differ from the defaults).
    """
    own_tests = any(is_test_file(name) for name in files)
    if own_tests:
        tree = {n: b for n, b in files.items() if n.endswith((".rego", ".json", ".yaml", ".yml"))}
    else:
        if not fallback_tests:
            return 0, []
        tree = {n: b for n, b in files.items() if n.endswith(".rego")}
        tree.update(fallback_tests)
        tree.update(fallback_data)
    # No .manifest: the test packages (replication_test) lie outside the bundle roots. Files
    # that do not parse are already reported; the tests of everything else still run.
    tree.pop(".manifest", None)
    for name in unparsable:
        tree.pop(name, None)
    with tempfile.TemporaryDirectory(prefix="bundle-test-") as work:
        write_files(tree, Path(work))
        done = _run([str(opa), "test", "--format", "json", *_capabilities(), "."], Path(work))
    try:
        results = json.loads(done.stdout or "[]")
    except ValueError:
        text = (done.stderr or done.stdout).strip() or f"exit status {done.returncode}"
        return 0, [
            DataProblem("opa-test", "bundle", _sandboxed(line)) for line in text.splitlines()[:40]
        ]
    if not isinstance(results, list):
        return 0, [DataProblem("opa-test", "bundle", "opa test gave no result list")]
    problems: list[DataProblem] = []
    for result in results:
        if not isinstance(result, dict) or not (result.get("fail") or result.get("error")):
            continue
        location = result.get("location") or {}
        where = f"{location.get('file', '?')}:{location.get('row', '?')}"
        name = f"{result.get('package', '?')}.{result.get('name', '?')}"
        error = result.get("error")
        why = f"errored: {_message(error)}" if error else "failed"
        problems.append(DataProblem("opa-test", where, f"test {name} {why}"))
    if done.returncode != 0 and not problems:
        text = (done.stderr or "").strip() or f"exit status {done.returncode}"
        problems += [
            DataProblem("opa-test", "bundle", _sandboxed(line)) for line in text.splitlines()[:40]
        ]
    return len(results), problems


def conftest_inventory(
    conftest: Path, policy_dir: Path, inventory: Mapping[str, Any]
) -> list[DataProblem]:
    """Run the conftest inventory checks (``rego/inventory``) on the loaded inventory."""
    if not policy_dir.is_dir():
        return [
            DataProblem("inventory", str(policy_dir), "the conftest inventory policy is missing")
        ]
    with tempfile.TemporaryDirectory(prefix="bundle-inventory-") as work:
        target = Path(work) / "inventory.yaml"
        target.write_text(yaml.safe_dump(dict(inventory), sort_keys=False), encoding="utf-8")
        policy = Path(work) / "policy"
        shutil.copytree(policy_dir, policy, ignore=shutil.ignore_patterns("*_test.rego"))
        done = _run(
            [str(conftest), "test", "--no-color", "--output", "json", "--policy", str(policy),
             str(target)],
            Path(work),
        )  # fmt: skip
    if done.returncode == 0:
        return []
    try:
        reports = json.loads(done.stdout or "[]")
    except ValueError:
        text = (done.stderr or done.stdout).strip()
        return [DataProblem("inventory", "config", line) for line in text.splitlines()[:40]]
    problems = [
        DataProblem("inventory", "config registries", str(failure.get("msg", failure)))
        for report in reports
        if isinstance(report, dict)
        for failure in report.get("failures") or []
        if isinstance(failure, dict)
    ]
    return problems or [DataProblem("inventory", "config", done.stderr.strip()[:500])]


def _opa_errors(text: str) -> list[DataProblem]:
    try:
        doc = json.loads(text) if text.strip().startswith("{") else None
    except ValueError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        out = []
        for error in doc["errors"]:
            if not isinstance(error, dict):
                continue
            location = error.get("location") or {}
            where = f"{location.get('file', 'bundle')}:{location.get('row', '?')}"
            out.append(DataProblem("opa-check", where, _sandboxed(_message(error))))
        return out
    out = []
    for line in text.splitlines():
        match = _LOCATION.match(line.strip())
        if match:
            out.append(
                DataProblem(
                    "opa-check",
                    f"{match['file']}:{match['line']}",
                    _sandboxed(match["msg"].strip()),
                )
            )
    return out


def _capabilities() -> list[str]:
    return ["--capabilities", str(OPA_CAPABILITIES)]


def _sandboxed(message: str) -> str:
    """Say why a removed builtin is "undefined": the sandbox, not a typo."""
    match = _UNDEFINED.search(message)
    if match and match["name"] in SANDBOX_REMOVED_BUILTINS:
        name = match["name"]
        return (
            f"{message} (builtin {name} is not allowed in bundles: it "
            f"{SANDBOX_REMOVED_BUILTINS[name]})"
        )
    return message


def _message(error: Any) -> str:
    if isinstance(error, dict):
        code = error.get("code", "")
        message = str(error.get("message", error))
        return f"{code}: {message}" if code else message
    return str(error)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            args,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
            env=sandbox_env(),
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, 124, "", f"{args[0]} did not finish in time")
    except OSError as exc:
        return subprocess.CompletedProcess(args, 127, "", f"cannot run {args[0]}: {exc}")

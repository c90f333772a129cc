"""Bundle validation with the real opa and conftest: every problem of a bad bundle, at once.

The bundles are the checkout's real policies and data (built and signed by ``opa build``), then
edited the way an author or an attacker would: malformed Rego, a failing test, data that breaks
the schema, a rule-chain cycle, unknown registries and tenants, unsafe archive members, a bundle
over the size limit, a signature from the wrong key.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from sidecar.bundles.keys import generate_keypair
from sidecar.bundles.validate import (
    BundleValidator,
    Inventory,
    ToolPaths,
    inventory_of,
    validator_for,
)
from sidecar.config import load_config
from sidecar.tools import find_tool
from tests.support.admin import CASES_CONFIG
from tests.support.opa import SigningKeys, build_test_bundle, bundle_files, pack_bundle

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, opa_keys: SigningKeys) -> bytes:
    """The checkout's bundle plus the case data, signed with the session key."""
    out = tmp_path_factory.mktemp("validation") / "good.tar.gz"
    built = build_test_bundle(ROOT, opa_keys, out, data_dirs=[CASES_CONFIG.parent / "data"])
    return built.path.read_bytes()


@pytest.fixture(scope="module")
def validator(opa_keys: SigningKeys) -> BundleValidator:
    return validator_for(load_config(CASES_CONFIG), opa_keys.public, max_bytes=200_000)


def _edited(raw: bytes, edit: Callable[[dict[str, bytes], dict[str, object]], None]) -> bytes:
    """Unpack, let ``edit`` change the files and the data document, repack unsigned."""
    files = bundle_files(raw)
    files.pop(".signatures.json")
    data = json.loads(files["data.json"])
    edit(files, data)
    files["data.json"] = json.dumps(data).encode()
    return pack_bundle(files)


def test_the_real_bundle_passes_every_check(validator: BundleValidator, good: bytes) -> None:
    report = validator.validate(good, require_signature=True)
    assert report.valid, [str(p) for p in report.problems]
    assert report.signed and report.tests_run > 100
    assert "replication/decision.rego" in report.files


def test_a_bad_bundle_is_refused_with_every_problem_named(
    validator: BundleValidator, good: bytes
) -> None:
    def edit(files: dict[str, bytes], data: dict[str, object]) -> None:
        files["replication/broken.rego"] = (
            b"package replication.broken\n\nimport rego.v1\n\nx if {\n"
        )
        files["replication/unused.rego"] = (
            b"package replication.unused\n\nimport rego.v1\n\nx if {\n\ty := 1\n}\n"
        )
        files["replication/own_test.rego"] = (
            b"package replication.own_test\n\nimport rego.v1\n\ntest_never if false\n"
        )
        replication = data["replication"]
        assert isinstance(replication, dict)
        replication["settings"]["scan"]["max_age_days"] = "seven"
        replication["rules"] = [
            {"id": "a", "chain": ["b"]},
            {"id": "b", "chain": ["a"], "deny": [{"registry": "no-such-registry"}]},
        ]
        replication["tenants"]["initech"] = {"rules": []}

    report = validator.validate(_edited(good, edit))
    problems = [str(p) for p in report.problems]
    assert not report.valid and not report.signed
    expected = [
        "opa-check: replication/broken.rego:",
        "opa-check: replication/unused.rego:6: rego_compile_error: assigned var y unused",
        "opa-test: replication/own_test.rego:5: test data.replication.own_test.test_never failed",
        "schema: data.json:replication.settings.scan.max_age_days: 'seven' is not of type 'number'",
        "rules: data.json: rule chain cycle: a -> b -> a",
        "references: data.json:replication.rules.1.deny.0.registry: rule 'b' names registry "
        "'no-such-registry', which the inventory lacks",
        "references: data.json:replication.tenants.initech: tenant 'initech' is not in the "
        "inventory's tenants",
    ]
    for start in expected:
        assert any(p.startswith(start) for p in problems), f"{start!r} not in {problems}"


@pytest.mark.parametrize(
    ("name", "build", "expected"),
    [
        ("traversal", lambda f: pack_bundle(f, _member("../../etc/cron.d/evil", b"x")),
         "archive: ../../etc/cron.d/evil: path escapes the bundle"),
        ("symlink", lambda f: pack_bundle(f, _symlink("replication/link.rego", "/etc/passwd")),
         "archive: replication/link.rego: symlink members are not allowed"),
        ("no manifest", lambda f: pack_bundle({k: v for k, v in f.items() if k != ".manifest"}),
         "manifest: .manifest: missing"),
        ("foreign root", lambda f: pack_bundle({**f, ".manifest": b'{"revision": "r", "roots": ["x"]}'}),
         "manifest: .manifest: roots ['x'] are outside"),
        ("not gzip", lambda f: b"PK\x03\x04 definitely a zip file",
         "archive: bundle: not a gzipped tar archive"),
    ],
)  # fmt: skip
def test_unsafe_or_malformed_archives_are_refused_by_name(
    validator: BundleValidator, good: bytes, name: str, build: Callable[..., bytes], expected: str
) -> None:
    files = bundle_files(good)
    files.pop(".signatures.json")
    report = validator.validate(build(files))
    assert any(str(p).startswith(expected) for p in report.problems), (
        name, [str(p) for p in report.problems])  # fmt: skip


def test_size_limits_refuse_big_bundles_and_gzip_bombs(good: bytes, opa_keys: SigningKeys) -> None:
    config = load_config(CASES_CONFIG)
    small = validator_for(config, opa_keys.public, max_bytes=len(good) - 1)
    [problem] = small.validate(good).problems
    assert str(problem) == (
        f"size: bundle: archive is {len(good)} bytes, over the limit of {len(good) - 1} bytes"
    )
    bomb = pack_bundle({".manifest": b"{}", "data.json": b"{" + b" " * 5_000_000 + b"}"})
    assert len(bomb) < 100_000
    tight = validator_for(config, opa_keys.public, max_unpacked_bytes=1_000_000)
    [problem] = tight.validate(bomb).problems
    assert str(problem) == "size: bundle: archive unpacks to more than 1000000 bytes"


def test_wrong_signing_key_and_missing_signature(
    tmp_path: Path, good: bytes, opa_keys: SigningKeys
) -> None:
    _, other_public = generate_keypair(tmp_path / "other")
    report = validator_for(load_config(CASES_CONFIG), other_public).validate(good)
    assert [p.check for p in report.problems] == ["signature"]
    assert "does not verify with bundle-verification.pem" in str(report.problems[0])
    files = bundle_files(good)
    files.pop(".signatures.json")
    unsigned = validator_for(load_config(CASES_CONFIG), opa_keys.public)
    report = unsigned.validate(pack_bundle(files), require_signature=True)
    assert [str(p) for p in report.problems] == [
        "signature: .signatures.json: missing: the bundle is not signed"
    ]


def test_conftest_inventory_checks_run_on_the_loaded_inventory(
    good: bytes, opa_keys: SigningKeys
) -> None:
    config = load_config(CASES_CONFIG)
    inventory = inventory_of(config)
    registries = [dict(r) for r in inventory.document["registries"]]
    registries[1]["region"] = ""  # what the conftest policy refuses and the loader lets through
    broken = Inventory(inventory.registries, inventory.tenants,
                       {**inventory.document, "registries": registries})  # fmt: skip
    validator = BundleValidator(
        tools=ToolPaths(find_tool("opa"), find_tool("conftest")),
        verification_key=opa_keys.public,
        source_dir=ROOT,
        inventory=broken,
    )
    problems = [str(p) for p in validator.validate(good).problems]
    assert problems == [
        f'inventory: config registries: registry "{registries[1]["name"]}" has no region'
    ]


def _member(name: str, body: bytes) -> Callable[[tarfile.TarFile], None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(body)
        archive.addfile(info, io.BytesIO(body))

    return add


def _symlink(name: str, target: str) -> Callable[[tarfile.TarFile], None]:
    def add(archive: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        archive.addfile(info)

    return add


def test_prune_reasons_that_never_remove_are_refused(
    validator: BundleValidator, good: bytes
) -> None:
    """DESIGN §3.4: "not now" codes never remove; listing one is a mistake the author must see."""

    def edit(_: dict[str, bytes], data: dict[str, object]) -> None:
        replication = data["replication"]
        assert isinstance(replication, dict)
        replication["prune"] = {"reasons": ["NOT_GDPR", "SCAN_MISSING", "ENV_MISMATCH", "EMBARGO"]}

    report = validator.validate(_edited(good, edit))
    schema = [str(p) for p in report.problems if p.check == "schema"]
    assert not report.valid
    never = "never removes a copy (DESIGN §3.4"
    assert [p.partition(never)[0] for p in schema] == [
        "schema: data.json:replication.prune.reasons.1: 'SCAN_MISSING': this code ",
        "schema: data.json:replication.prune.reasons.2: 'ENV_MISMATCH': this code ",
    ]

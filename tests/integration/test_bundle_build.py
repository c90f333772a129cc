"""Bundle build, signing and verification with the real ``opa``; data layering; rule chains."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import tarfile
from pathlib import Path

import pytest

from sidecar.bundles.build import BuiltBundle, build_bundle, verify_bundle
from sidecar.bundles.keys import generate_keypair
from sidecar.errors import BundleError
from sidecar.policy.opa import OpaEngine
from tests.support.opa import (
    SigningKeys,
    build_test_bundle,
    rewrite_bundle,
    running_opa,
    write_source_tree,
)

pytestmark = pytest.mark.integration


def _bundle_data(path: Path) -> object:
    with tarfile.open(path, "r:gz") as archive:
        member = next(m for m in archive.getmembers() if m.name.lstrip("/") == "data.json")
        handle = archive.extractfile(member)
        assert handle is not None
        return json.load(handle)


def test_bundle_is_signed_and_ships_only_policies_and_data(
    opa_bundle: BuiltBundle, opa_keys: SigningKeys, opa_binary: Path
) -> None:
    raw = opa_bundle.path.read_bytes()

    assert opa_bundle.files == (
        ".manifest",
        ".signatures.json",
        "data.json",
        "replication/decision.rego",
        "system/authz.rego",
    )  # no *_test.rego, nothing from rego/inventory
    assert opa_bundle.digest == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert opa_bundle.size == len(raw)
    info = verify_bundle(opa_bundle.path, opa_keys.public, opa_binary=opa_binary)
    assert (info.revision, info.digest, info.files) == (
        opa_bundle.revision,
        opa_bundle.digest,
        opa_bundle.files,
    )
    assert info.roots == ("replication", "system")


def test_default_revision_is_utc_time_plus_content_hash(
    opa_source: Path, opa_keys: SigningKeys, tmp_path: Path
) -> None:
    first = build_test_bundle(opa_source, opa_keys, tmp_path / "a.tar.gz")
    again = build_test_bundle(opa_source, opa_keys, tmp_path / "b.tar.gz")
    policy = opa_source / "rego" / "replication" / "decision.rego"
    policy.write_text(policy.read_text() + "\nanother := 1\n")
    changed = build_test_bundle(opa_source, opa_keys, tmp_path / "c.tar.gz")

    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{12}", first.revision)
    assert first.revision.split("-")[1] == again.revision.split("-")[1]
    assert changed.revision.split("-")[1] != first.revision.split("-")[1]


async def test_data_dirs_and_extra_data_merge_over_the_defaults(
    opa_keys: SigningKeys, tmp_path: Path
) -> None:
    settings = {"mode": "default", "limits": {"a": 1, "b": 2}, "regions": ["us", "eu"]}
    source = write_source_tree(tmp_path / "src", settings=settings)
    site = tmp_path / "site" / "replication" / "settings"
    site.mkdir(parents=True)
    (site / "data.json").write_text(json.dumps({"limits": {"b": 3}, "regions": ["ap"]}))
    team = tmp_path / "team" / "replication" / "settings"
    team.mkdir(parents=True)
    (team / "data.yaml").write_text("mode: team\n")
    legacy = {"rules": [{"id": "legacy-0", "destination_registry": "gcr"}]}

    built = build_test_bundle(
        source,
        opa_keys,
        tmp_path / "b.tar.gz",
        data_dirs=[tmp_path / "site", tmp_path / "team"],
        extra_data={"replication/legacy": legacy},
    )

    expected = {"mode": "team", "limits": {"a": 1, "b": 3}, "regions": ["ap"]}
    assert _bundle_data(built.path) == {"replication": {"settings": expected, "legacy": legacy}}
    async with running_opa(built.path, opa_keys) as managed:
        engine = OpaEngine(managed.url, timeout_s=5.0, token=managed.token)
        try:
            answer = await engine.evaluate({"event": "push", "image": {"tag": "t"}})
        finally:
            await engine.close()
    assert answer.result["mode"] == "team"


def test_cyclic_rule_chain_is_rejected_naming_the_cycle(
    opa_keys: SigningKeys, tmp_path: Path
) -> None:
    output = tmp_path / "b.tar.gz"
    build_test_bundle(write_source_tree(tmp_path / "good"), opa_keys, output)
    previous = output.read_bytes()
    rules = [{"id": "mirror", "chain": ["retain"]}, {"id": "retain", "chain": ["mirror"]}]
    tenants = {"acme": {"rules": [{"id": "acme-self", "chain": ["acme-self"]}]}}
    source = write_source_tree(tmp_path / "src", rules=rules, tenants=tenants)

    with pytest.raises(BundleError, match="rejected") as caught:
        build_test_bundle(source, opa_keys, output)

    assert caught.value.problems == (
        "rule chain cycle: acme-self -> acme-self",
        "rule chain cycle: mirror -> retain -> mirror",
    )
    assert "mirror -> retain -> mirror" in str(caught.value)
    assert output.read_bytes() == previous  # a rejected build leaves the last good bundle


def test_every_rule_problem_is_listed_at_once(opa_keys: SigningKeys, tmp_path: Path) -> None:
    rules = [{"id": "a", "chain": ["ghost"]}, {"id": "a"}, {"priority": 3}]
    tenants = {"acme": {"rules": [{"id": "b", "chain": ["a"]}]}}
    source = write_source_tree(tmp_path / "src", rules=rules, tenants=tenants)

    with pytest.raises(BundleError) as caught:
        build_test_bundle(source, opa_keys, tmp_path / "b.tar.gz")

    assert set(caught.value.problems) == {
        "replication.rules[2] has no id (a non-empty string is required)",
        "duplicate rule id 'a' (replication.rules[0] and replication.rules[1])",
        "rule 'a' (replication.rules[0]) chains to unknown rule 'ghost'",
    }
    assert not (tmp_path / "b.tar.gz").exists()


def test_opa_compile_errors_are_surfaced(opa_keys: SigningKeys, tmp_path: Path) -> None:
    source = write_source_tree(tmp_path / "src", policy="package replication\n\ndecision := {\n")

    with pytest.raises(BundleError, match="opa build failed") as caught:
        build_test_bundle(source, opa_keys, tmp_path / "b.tar.gz")

    assert "replication/decision.rego" in str(caught.value)
    assert "rego_parse_error" in str(caught.value)


def test_a_source_without_policies_is_rejected(opa_keys: SigningKeys, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no policies found"):
        build_bundle(
            source_dir=tmp_path, output=tmp_path / "b.tar.gz", signing_key=opa_keys.private
        )


@pytest.mark.parametrize("damage", ["tampered", "unsigned", "extra file", "wrong key"])
def test_verify_refuses_damaged_bundles(
    damage: str, opa_bundle: BuiltBundle, opa_keys: SigningKeys, tmp_path: Path
) -> None:
    bad, key = tmp_path / "bad.tar.gz", opa_keys.public
    if damage == "tampered":
        rewrite_bundle(opa_bundle.path, bad, lambda f: f.update({"data.json": b'{"x": 1}'}))
    elif damage == "unsigned":
        rewrite_bundle(opa_bundle.path, bad, lambda f: f.pop(".signatures.json"))
    elif damage == "extra file":
        rewrite_bundle(opa_bundle.path, bad, lambda f: f.update({"replication/x.rego": b"x"}))
    else:
        bad, key = opa_bundle.path, generate_keypair(tmp_path / "other")[1]

    with pytest.raises(BundleError, match="failed signature verification"):
        verify_bundle(bad, key)


def test_keypair_private_key_is_owner_only_and_never_silently_replaced(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "keys")
    first = private.read_bytes()

    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(BundleError, match="refusing to overwrite"):
        generate_keypair(tmp_path / "keys")
    assert private.read_bytes() == first
    generate_keypair(tmp_path / "keys", overwrite=True)
    assert private.read_bytes() != first
    assert stat.S_IMODE(private.stat().st_mode) == 0o600

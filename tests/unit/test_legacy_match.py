"""match_rule evaluates a legacy rule natively, with the semantics of the real policy in OPA."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from sidecar.config import ReplicationRule, SyncConfig, SyncImage
from sidecar.fallback.legacy import LegacyRule, convert_rules, match_rule, substitute
from sidecar.model.decision import ImageRef
from sidecar.tools import find_tool

ROOT = Path(__file__).resolve().parents[2]
LEGACY_REGO = ROOT / "rego" / "replication" / "legacy.rego"


def _rule(source: str, destination: str = "", **fields: Any) -> LegacyRule:
    rule = ReplicationRule(
        source_repository=source,
        destination_registry="prod",
        destination_repository=destination,
        **fields,
    )
    return convert_rules([rule], ())[0]


@pytest.mark.parametrize(
    ("rule", "ref", "expected"),
    [
        (_rule("team/*", "mirror/$1"), "ci/team/app:v1", ("mirror/app", "v1")),
        (_rule("team/*", "mirror/$1"), "ci/team/app/sub:v1", None),  # "*" never crosses "/"
        (_rule("team/*", "mirror/$1"), "ci/other/app:v1", None),
        (_rule("*/*", "$2/$1"), "ci/a/b:t", ("b/a", "t")),
        (_rule("apps/*/*", "m/$2-$1"), "ci/apps/x/y:t", ("m/y-x", "t")),
        (_rule("team/app", "copy"), "ci/team/app:t", ("copy", "t")),  # exact
        (_rule("team/app"), "ci/team/app2:t", None),
        (_rule("team/app?"), "ci/team/app2:t", None),  # no "*": "?" is literal, like Freightliner
        (_rule("team/app?/*", "m/$1"), "ci/team/app2/x:t", ("m/x", "t")),
        (_rule("team/app[0-9]*", "m/$1"), "ci/team/app7x:t", ("m/x", "t")),
        (_rule("keep/*", "keep/*"), "ci/keep/me:t", ("keep/me", "t")),  # same pattern keeps name
        (_rule("keep/*"), "ci/keep/me:t", ("keep/me", "t")),  # empty destination keeps name
        (_rule("many/*", "one"), "ci/many/x:t", ("one", "t")),  # many-to-one
        (_rule("team/*", tag_filter="v*"), "ci/team/a:v2", ("team/a", "v2")),
        (_rule("team/*", tag_filter="v*"), "ci/team/a:latest", None),
        (_rule("team/*", tag_filter="latest"), "ci/team/a:latest", ("team/a", "latest")),
        (
            _rule("team/*", include_tags=("rel-*",), exclude_tags=("*-rc*",)),
            "ci/team/a:rel-1",
            ("team/a", "rel-1"),
        ),
        (
            _rule("team/*", include_tags=("rel-*",), exclude_tags=("*-rc*",)),
            "ci/team/a:rel-1-rc2",
            None,
        ),
        (_rule("team/*", include_tags=("rel-*",)), "ci/team/a:dev", None),
        (_rule("team/*", source_registry="ci"), "ci/team/a:t", ("team/a", "t")),
        (_rule("team/*", source_registry="ci"), "dev/team/a:t", None),
        (_rule("team/*"), "prod/team/a:t", None),  # never back into its own registry
        (_rule("team/*"), "ci/team/a@sha256:" + "0" * 64, ("team/a", "")),
    ],
)
def test_match_rule(rule: LegacyRule, ref: str, expected: tuple[str, str] | None) -> None:
    assert match_rule(rule, ImageRef.parse(ref)) == expected


def test_sync_config_tag_selectors_and_tag_prefix() -> None:
    images = (
        SyncImage("library/nginx", tags=("latest", "1.25")),
        SyncImage("library/redis", tag_regex=r"^7\.", destination_repository="cache/redis"),
        SyncImage("library/postgres", all_tags=True, destination_prefix="pg-"),
    )
    sync = SyncConfig("s.yaml", "hub.io", "mirror.io", "hub", "mirror", images)
    nginx, redis, postgres = convert_rules((), [sync])
    assert match_rule(nginx, ImageRef("hub", "library/nginx", "1.25")) == ("library/nginx", "1.25")
    assert match_rule(nginx, ImageRef("hub", "library/nginx", "1.24")) is None
    assert match_rule(redis, ImageRef("hub", "library/redis", "7.2")) == ("cache/redis", "7.2")
    assert match_rule(redis, ImageRef("hub", "library/redis", "6.2")) is None
    assert match_rule(redis, ImageRef("hub", "library/redis", "x7.2")) is None
    pg = match_rule(postgres, ImageRef("hub", "library/postgres", "latest"))
    assert pg == ("library/postgres", "pg-latest")


@pytest.mark.parametrize(
    ("template", "captures", "expected"),
    [
        ("mirror/$1", ("app",), "mirror/app"),
        ("$2/$1/$2", ("a", "b"), "b/a/b"),
        ("x/$3", ("a",), "x/$3"),  # past the last capture: left as written
        ("x/$1", ("$2",), "x/$2"),  # one pass: a capture is never substituted again
        ("$10", tuple("abcdefghij"), "a0"),  # $1 then a literal 0, as in OPA
        ("plain", (), "plain"),
    ],
)
def test_substitute(template: str, captures: tuple[str, ...], expected: str) -> None:
    assert substitute(template, captures) == expected


# The same rules and images, evaluated by the real policy in a real OPA and natively.
PARITY_RULES = [
    ReplicationRule(
        source_repository="team/*",
        destination_registry="prod",
        destination_repository="mirror/$1",
        source_registry="ci",
        tag_filter="v*",
    ),
    ReplicationRule(
        source_repository="apps/*/*",
        destination_registry="dev",
        destination_repository="m/$2-$1",
        include_tags=("rel-*",),
        exclude_tags=("*-rc*",),
    ),
    ReplicationRule(
        source_repository="keep/*", destination_registry="sandbox", destination_repository="keep/*"
    ),
    ReplicationRule(
        source_repository="team/app", destination_registry="dev", destination_repository="exact"
    ),
    ReplicationRule(
        source_repository="team/ap?/*",
        destination_registry="sandbox",
        destination_repository="q/$1",
    ),
    ReplicationRule(
        source_repository="team/*", destination_registry="prod", destination_repository="second/$1"
    ),
    ReplicationRule(
        source_repository="svc[0-9]/*", destination_registry="dev", destination_repository="c/$1"
    ),
    ReplicationRule(source_repository="*", destination_registry="elsewhere"),
]
PARITY_SYNC = SyncConfig(
    "s.yaml",
    "ci.io",
    "sandbox.io",
    "ci",
    "sandbox",
    (
        SyncImage(
            "library/*",
            tag_regex=r"^3\.",
            destination_repository="base/$1",
            destination_prefix="p-",
            destination_suffix="-s",
        ),
        SyncImage("team/app", tags=("v1", "latest")),
    ),
)
PARITY_IMAGES = [
    ImageRef(registry, repository, tag)
    for registry in ("ci", "dev")
    for repository in (
        "team/app",
        "team/app/sub",
        "apps/x/y",
        "keep/me",
        "team/apz/q",
        "svc1/a",
        "svcx/a",
        "library/alpine",
        "solo",
    )
    for tag in ("v1", "latest", "rel-2", "rel-2-rc1", "3.19", "")
]
REGISTRIES = [{"name": n} for n in ("ci", "dev", "prod", "sandbox")]


def _native_routes(rules: tuple[LegacyRule, ...], image: ImageRef) -> dict[str, Any]:
    inventory = {r["name"] for r in REGISTRIES}
    routes: dict[str, Any] = {}
    for rule in sorted(rules, key=lambda r: r.id, reverse=True):  # smallest id wins, as in Rego
        found = match_rule(rule, image)
        if found is not None and rule.destination_registry in inventory:
            routes[rule.destination_registry] = {
                "registry": rule.destination_registry,
                "repository": found[0],
                "tag": found[1],
                "rule": rule.id,
            }
    return routes


def test_match_rule_agrees_with_the_real_policy_in_opa(tmp_path: Path) -> None:
    rules = convert_rules(PARITY_RULES, [PARITY_SYNC])
    inputs = [
        {
            "image": {"registry": i.registry, "repository": i.repository, "tag": i.tag},
            "registries": REGISTRIES,
        }
        for i in PARITY_IMAGES
    ]
    data = {
        "replication": {"legacy": {"rules": [r.to_json() for r in rules]}},
        "parity_inputs": inputs,
    }
    (tmp_path / "data.json").write_text(json.dumps(data), encoding="utf-8")
    query = (
        "[r | some c in data.parity_inputs; r := data.replication.legacy.routes with input as c]"
    )
    proc = subprocess.run(
        [
            str(find_tool("opa")),
            "eval",
            "--format",
            "json",
            "-d",
            str(LEGACY_REGO),
            "-d",
            str(tmp_path / "data.json"),
            query,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    from_opa = json.loads(proc.stdout)["result"][0]["expressions"][0]["value"]
    native = [_native_routes(rules, image) for image in PARITY_IMAGES]
    assert sum(len(r) for r in native) > 20  # the cases really exercise routing
    for image, expected, actual in zip(PARITY_IMAGES, from_opa, native, strict=True):
        assert actual == expected, str(image)

"""The impact preview (issue 13 item 6): what a candidate bundle would change, before it is published.

Real registries (tests/support/fleet.py), the default bundle on the serving managed OPA and the
candidate on a spare one. Every assertion that "nothing changed" reads the registries back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import signing_keys
from sidecar.cli import main
from sidecar.config import Config, ReconcileSettings, load_config
from sidecar.oci import RegistryClients
from sidecar.tools import find_tool
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes, write_data
from tests.support.fleet import FLEET, Fleet, registry_fleet
from tests.support.images import push_image, push_manifest, scanned_labels
from tests.support.sidecar import running_sidecar

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]

AUTHOR = bearer("policy-author-secret")
MIRROR_RULE = {"id": "mirror-web", "match": {"repository": "web/*"},
               "set": {"destination_repository": "mirror/{repository}"}}  # fmt: skip


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """The five registries."""
    with registry_fleet(tmp_path) as running:
        yield running


async def _push(
    clients: RegistryClients, repository: str, tag: str, seed: int, *, to: tuple[str, ...],
    **labels: str,
) -> str:  # fmt: skip
    scanned = scanned_labels(**labels)  # once: the scan time is a label, the same everywhere
    digests = set()
    for name in to:
        client = clients.get(name)
        image = await push_image(client, repository, seed=seed, labels=scanned)
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, tag)
        digests.add(image.digest)
    (digest,) = digests
    return digest


async def _held(clients: RegistryClients, repository: str, reference: str) -> frozenset[str]:
    found = set()
    for name in FLEET:
        if await clients.get(name).head_manifest(repository, reference) is not None:
            found.add(name)
    return frozenset(found)


def _candidate(config: Config, work: Path, name: str, **data: object) -> bytes:
    """The config's bundle with data overlays ({"replication.rules": [...]}), signed."""
    overlay = work / f"overlay-{name}"
    for path, value in data.items():
        write_data(overlay, path.replace(".", "/"), value)
    return build_bundle_bytes(config, work / f"{name}.tar.gz", name, overlays=(overlay,))


def _repack(raw: bytes, *, drop: str = "", change: str = "") -> bytes:
    """The bundle archive without member ``drop``, or with a comment added to the first file
    whose name ends with ``change`` (still valid: only the signature can tell)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as src, \
            tarfile.open(fileobj=out, mode="w:gz") as dst:  # fmt: skip
        for member in src.getmembers():
            name = member.name.lstrip("/")
            if drop and name == drop:
                continue
            data = src.extractfile(member).read() if member.isfile() else b""  # type: ignore[union-attr]
            if change and name.endswith(change):
                data += b"\n# tampered\n"
                member.size = len(data)
                change = ""
            dst.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return out.getvalue()


def _hand_signed(config: Config, raw: bytes, stage: Path) -> bytes:
    """``raw``'s files plus a policy calling http.send, signed with the right key by opa build."""
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as src:
        for member in src.getmembers():
            name = member.name.lstrip("/")
            if member.isfile() and name != ".signatures.json":
                (stage / name).parent.mkdir(parents=True, exist_ok=True)
                (stage / name).write_bytes(src.extractfile(member).read())  # type: ignore[union-attr]
    (stage / "replication" / "reach.rego").write_text(
        "package replication.reach\n\nimport rego.v1\n\n"
        'leak := http.send({"method": "GET", "url": "http://127.0.0.1:9/steal"})\n',
        encoding="utf-8",
    )
    key, _ = signing_keys(config)
    out = stage.parent / f"{stage.name}.tar.gz"
    subprocess.run(
        [str(find_tool("opa")), "build", "-b", ".", "--signing-key", str(key.resolve()),
         "--signing-alg", "RS256", "-o", str(out)],
        cwd=stage, check=True, capture_output=True,
    )  # fmt: skip
    return out.read_bytes()


async def test_cli_preview_of_a_candidate_adding_a_rule_lists_its_copies_and_copies_nothing(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = await _push(clients, "web/app", "prod-1.0", 1, to=("ci", "prod-eu", "prod-us"))
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    doc["policy"]["reconcile"] = {"sources": ["ci"]}
    doc["policy"]["state_dir"] = str(tmp_path / "cli-state")
    doc["policy"]["bundle"] = {"output": str(tmp_path / "cli-state" / "bundle.tar.gz")}
    path = tmp_path / "reconcile.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    candidate = tmp_path / "candidate.tar.gz"
    candidate.write_bytes(
        _candidate(
            load_config(path), tmp_path, "with-mirror", **{"replication.rules": [MIRROR_RULE]}
        )
    )

    argv = ["--config", str(path), "reconcile", "--bundle", str(candidate)]
    assert await asyncio.to_thread(main, [*argv, "--json", "--quiet"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["preview"] is True and out["dry_run"] is True
    impact = out["impact"]
    assert impact["after_revision"] == "with-mirror" != impact["before_revision"]
    added = {(c["target"], c["before"], c["after"]) for c in impact["changes"]
             if c["kind"] == "copy_added"}  # fmt: skip
    assert added == {
        ("prod-eu/mirror/web/app:prod-1.0", "-", "copy"),
        ("prod-us/mirror/web/app:prod-1.0", "-", "copy"),
    }
    dropped = {c["target"] for c in impact["changes"] if c["kind"] == "route_dropped"}
    assert dropped == {"prod-eu/web/app:prod-1.0", "prod-us/web/app:prod-1.0"}
    totals = impact["totals"]
    assert totals["copy_added"] == 2 and totals["removal_added"] == 0
    assert totals["routes_changed"] == 1 and totals["images"] == 1
    assert totals["bytes_to_copy_before"] == 0 < totals["bytes_to_copy_after"]
    # A preview never applies: no copy was made under the candidate's rule.
    assert await _held(clients, "mirror/web/app", app) == frozenset()
    assert await _held(clients, "web/app", app) == {"ci", "prod-eu", "prod-us"}

    assert await asyncio.to_thread(main, argv) == 0
    table = capsys.readouterr().out
    assert "copy_added" in table and "prod-eu/mirror/web/app:prod-1.0" in table
    assert "- → copy" in table and "preview: nothing was applied" in table
    assert "copies +2 -0, removals +0 -0" in table

    # --apply with --bundle is refused before anything runs.
    assert await asyncio.to_thread(main, [*argv, "--apply"]) != 0


async def test_rpc_and_validate_bundle_preview_removals_and_the_serving_opa_is_untouched(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    # Copied everywhere by an older rule; the candidate makes label pii=true GDPR-restricted.
    digest = await _push(
        clients, "eu/crm", "prod-3", 3, to=("ci", "prod-eu", "prod-us"), pii="true"
    )
    config = admin_config(tmp_path / "state", base=fleet.config_path)
    config = dataclasses.replace(
        config,
        policy=dataclasses.replace(config.policy, reconcile=ReconcileSettings(sources=("ci",))),
    )
    async with running_sidecar(config) as running:
        managed = running.sidecar.runtime.managed if running.sidecar.runtime else None
        assert managed is not None
        serving_pid, serving_bundle = managed.pid, managed.bundle_path
        image = pb.Image(registry="ci", repository="eu/crm", tag="prod-3", digest=digest)
        serving = (await running.stub.Decide(pb.DecideRequest(image=image))).bundle_revision
        restricted = _candidate(
            config,
            tmp_path,
            "pii-is-gdpr",
            **{"replication.settings": {"compliance": {"label": "pii"}}},
        )

        events = [e async for e in running.stub.Reconcile(
            pb.ReconcileRequest(candidate_bundle=restricted))]  # fmt: skip
        assert all(e.preview for e in events)
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[-3:] == ["summary", "impact", "done"]
        planned = {(e.planned.kind, e.planned.registry) for e in events if e.HasField("planned")}
        assert planned == {("keep", "prod-eu"), ("remove", "prod-us")}
        assert events[-3].summary.bundle_revision == "pii-is-gdpr"
        impact = events[-2].impact
        assert [(c.kind, c.target, c.before, c.after) for c in impact.changes] == [
            ("removal_added", "prod-us/eu/crm:prod-3", "keep", "remove")
        ]
        assert impact.totals["removal_added"] == 1 and impact.totals["bytes_freed_after"] > 0
        assert (impact.before_revision, impact.after_revision) == (serving, "pii-is-gdpr")

        # ValidateBundle reports the same impact when asked, beside the validation.
        validated = await admin_stub(running.channel).ValidateBundle(
            pb.ValidateBundleRequest(bundle=restricted, preview_impact=True), metadata=AUTHOR
        )
        assert validated.valid and validated.impact_error == ""
        assert [c.kind for c in validated.impact.changes] == ["removal_added"]
        plain = await admin_stub(running.channel).ValidateBundle(
            pb.ValidateBundleRequest(bundle=restricted), metadata=AUTHOR
        )
        assert plain.valid and not plain.HasField("impact")

        # Unsigned and tampered candidates are refused like a publish would refuse them.
        for bad in (_repack(restricted, drop=".signatures.json"),
                    _repack(restricted, change=".rego")):  # fmt: skip
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                _ = [e async for e in running.stub.Reconcile(
                    pb.ReconcileRequest(candidate_bundle=bad))]  # fmt: skip
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "signature" in (refused.value.details() or "")
        # A signed candidate outside the policy sandbox (http.send) never gets an OPA.
        reaching = _hand_signed(config, restricted, tmp_path / "reaching")
        with pytest.raises(grpc.aio.AioRpcError) as outside:
            _ = [e async for e in running.stub.Reconcile(
                pb.ReconcileRequest(candidate_bundle=reaching))]  # fmt: skip
        assert outside.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "http.send" in (outside.value.details() or "")
        # A preview never applies.
        with pytest.raises(grpc.aio.AioRpcError) as applying:
            _ = [e async for e in running.stub.Reconcile(
                pb.ReconcileRequest(candidate_bundle=restricted, dry_run=False))]  # fmt: skip
        assert applying.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        # The serving OPA still serves its own revision, same process, same bundle.
        after = (await running.stub.Decide(pb.DecideRequest(image=image))).bundle_revision
        assert after == serving
        assert (managed.pid, managed.bundle_path) == (serving_pid, serving_bundle)
        summary = [e async for e in running.stub.Reconcile(pb.ReconcileRequest())][-2].summary
        assert summary.counts["remove"] == 0 and summary.bundle_revision == serving
    # Nothing was removed or copied by any of it.
    assert await _held(clients, "eu/crm", digest) == {"ci", "prod-eu", "prod-us"}

"""Bad bundles sent to the admin API: refused by name, audited, and nothing serving changes.

Malformed Rego, a data file that breaks the data schema, a path-traversal tar member, a bundle
over ``policy.admin.max_bundle_bytes`` and a signature by the wrong key, each through
PublishBundle (INVALID_ARGUMENT) and ValidateBundle (valid: false), against a real sidecar.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import tarfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from sidecar.bundles.keys import generate_keypair
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes
from tests.support.opa import rewrite_bundle
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

ADMIN = bearer("policy-admin-secret")
MAX_BYTES = 60_000


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningSidecar]:
    config = admin_config(tmp_path_factory.mktemp("admin-bad"), max_bundle_bytes=MAX_BYTES)
    async with running_sidecar(config) as running:
        yield running


@pytest.fixture(scope="module")
def good(sidecar: RunningSidecar, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("admin-bad-bundles") / "good.tar.gz"
    out.write_bytes(build_bundle_bytes(sidecar.sidecar.config, out, "good"))
    return out


def _unsigned(good: Path, edit: Callable[[dict[str, bytes]], object]) -> bytes:
    def apply(files: dict[str, bytes]) -> None:
        files.pop(".signatures.json")
        edit(files)

    return rewrite_bundle(good, good.with_name("edited.tar.gz"), apply).read_bytes()


def _malformed_rego(good: Path, _: Path) -> bytes:
    return _unsigned(good, lambda f: f.update({"replication/typo.rego": b"package x\nallow if {"}))


def _schema_break(good: Path, _: Path) -> bytes:
    def edit(files: dict[str, bytes]) -> None:
        data = json.loads(files["data.json"])
        data["replication"]["settings"]["cost"] = {"threshold": "cheap"}
        files["data.json"] = json.dumps(data).encode()

    return _unsigned(good, edit)


def _traversal(good: Path, _: Path) -> bytes:
    with tarfile.open(good, "r:gz") as archive:
        members = [(m, archive.extractfile(m)) for m in archive.getmembers() if m.isfile()]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as out:
            for member, handle in members:
                out.addfile(member, handle)
            evil = tarfile.TarInfo("../../../../tmp/pwned.rego")
            evil.size = 4
            out.addfile(evil, io.BytesIO(b"evil"))
    return gzip.compress(buffer.getvalue())


def _oversized(good: Path, _: Path) -> bytes:
    noise = os.urandom(MAX_BYTES)  # incompressible: the archive itself is over the limit
    return _unsigned(good, lambda f: f.update({"replication/padding.json": noise}))


def _over_a_mib(good: Path, _: Path) -> bytes:
    # Over policy.limits.max_message_bytes (1 MiB, which caps PolicyService messages) but within
    # the admin API's own transport cap (max_bundle_bytes + 1 MiB): the admin API still sees it.
    noise = os.urandom(1_060_000)
    bundle = _unsigned(good, lambda f: f.update({"replication/padding.json": noise}))
    assert 1024 * 1024 < len(bundle) < MAX_BYTES + 1024 * 1024 - 1024
    return bundle


def _wrong_key(good: Path, work: Path) -> bytes:
    from sidecar.bundles._publish_sign import sign_bundle  # noqa: PLC0415
    from sidecar.tools import find_tool  # noqa: PLC0415

    private, _ = generate_keypair(work / "other-key")
    signed = sign_bundle(good, work / "wrong-key.tar.gz", signing_key=private,
                         opa_binary=find_tool("opa"))  # fmt: skip
    return signed.path.read_bytes()


CASES = [
    ("malformed rego", _malformed_rego, "opa-check: replication/typo.rego:"),
    ("schema", _schema_break, "schema: data.json:replication.settings.cost.threshold: 'cheap'"),
    ("traversal", _traversal, "archive: ../../../../tmp/pwned.rego: path escapes the bundle"),
    ("oversized", _oversized, f"over the limit of {MAX_BYTES} bytes"),
    ("over the decide message cap", _over_a_mib, f"over the limit of {MAX_BYTES} bytes"),
    ("wrong key", _wrong_key, "signature: .signatures.json: does not verify"),
]


async def _serving(sidecar: RunningSidecar) -> tuple[str, str]:
    listing = await admin_stub(sidecar.channel).ListRevisions(
        pb.ListRevisionsRequest(), metadata=ADMIN
    )
    active = next(r.revision for r in listing.revisions if r.active)
    decided = await sidecar.stub.Decide(
        pb.DecideRequest(image=pb.Image(registry="ci", repository="team/app", tag="dev-1"))
    )
    return active, decided.bundle_revision


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_bundles_are_refused_by_name_audited_and_change_nothing(
    sidecar: RunningSidecar,
    good: Path,
    tmp_path: Path,
    case: tuple[str, Callable[[Path, Path], bytes], str],
) -> None:
    name, make, problem = case
    stub, bad = admin_stub(sidecar.channel), make(good, tmp_path)
    serving = await _serving(sidecar)

    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.PublishBundle(pb.PublishBundleRequest(bundle=bad), metadata=ADMIN)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert problem in (refused.value.details() or ""), refused.value.details()
    log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=1), metadata=ADMIN)
    event = log.events[0]
    assert (event.actor, event.action, event.outcome) == (
        "token:policy-admin", "PublishBundle", "rejected")  # fmt: skip
    assert problem in event.detail
    assert await _serving(sidecar) == serving

    report = await stub.ValidateBundle(pb.ValidateBundleRequest(bundle=bad), metadata=ADMIN)
    assert not report.valid and any(problem in p for p in report.problems), name
    log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=1), metadata=ADMIN)
    assert (log.events[0].action, log.events[0].outcome) == ("ValidateBundle", "rejected")


async def test_a_good_bundle_validates_and_publishes(sidecar: RunningSidecar, good: Path) -> None:
    stub, raw = admin_stub(sidecar.channel), await asyncio.to_thread(good.read_bytes)
    report = await stub.ValidateBundle(pb.ValidateBundleRequest(bundle=raw), metadata=ADMIN)
    assert report.valid and report.signed and report.tests_run > 100, list(report.problems)
    published = await stub.PublishBundle(pb.PublishBundleRequest(bundle=raw), metadata=ADMIN)
    # Signed with the sidecar's key and free of tests: published byte for byte.
    assert not published.signed_by_sidecar and published.digest == report.digest
    assert await _serving(sidecar) == ("good", "good")

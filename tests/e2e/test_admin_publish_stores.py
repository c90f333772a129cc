"""PublishBundle and Rollback through the admin API reach decisions, per store.

The sidecar's managed OPA pulls signed bundles from the store (S3 on moto, GCS on
fake-gcs-server, the built-in HTTP bundle server); the admin API validates, signs with the
sidecar's key and publishes there. The first bundle (which carries the role bindings) is published
out of band, as an operator bootstraps a fleet. A tampered or unsigned bundle is refused, by the
admin API before it reaches the store and by OPA when it reaches the store some other way, and the
previous revision keeps serving decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.bundles.keys import generate_keypair
from sidecar.bundles.publish import bundle_from_file
from sidecar.config import Config
from sidecar.config._admin import AdminPublishSettings
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes, write_data
from tests.support.bundle_stores import STORE_KINDS, BundleStore, bundle_store
from tests.support.opa import SigningKeys, rewrite_bundle
from tests.support.pulling import build_revision, pulling_config, signed_config
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = pytest.mark.integration

ADMIN = bearer("policy-admin-secret")
_DEADLINE_S = 30.0


@contextlib.asynccontextmanager
async def _fleet_of_one(kind: str, work: Path) -> AsyncIterator[tuple[RunningSidecar, BundleStore]]:
    """A store, a sidecar pulling from it, and the bootstrap bundle ``boot`` published there."""
    keys = SigningKeys(*generate_keypair(work / "keys"))
    async with bundle_store(kind, work / kind) as store:
        config = admin_config(work / "state", publish=AdminPublishSettings(token=store.token))
        config = pulling_config(signed_config(keys, config), store, work / "state")
        await store.publish(build_revision(config, work / "built", "boot"))
        async with running_sidecar(config) as running:
            await _until_decisions_carry(running, "boot")
            yield running, store


async def _until_decisions_carry(running: RunningSidecar, revision: str) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    request = pb.DecideRequest(image=pb.Image(registry="ci", repository="team/app", tag="dev-1"))
    while (answer := await running.stub.Decide(request)).bundle_revision != revision:
        assert time.monotonic() < deadline, f"still {answer.bundle_revision!r}, not {revision!r}"
        await asyncio.sleep(0.05)


def _bundle(config: Config, work: Path, revision: str, keep_last: int) -> bytes:
    overlay = write_data(
        work / f"overlay-{revision}",
        "replication/tenants",
        {"acme": {"retention": {"keep_last": keep_last, "older_than_days": 7}}},
    )
    return build_bundle_bytes(config, work / f"{revision}.tar.gz", revision, overlays=(overlay,))


@pytest.mark.parametrize("kind", STORE_KINDS)
async def test_publish_and_rollback_reach_decisions(kind: str, tmp_path: Path) -> None:
    async with _fleet_of_one(kind, tmp_path) as (running, store):
        stub, config = admin_stub(running.channel), running.sidecar.config
        for revision, keep in (("r1", 4), ("r2", 2)):
            published = await stub.PublishBundle(
                pb.PublishBundleRequest(bundle=_bundle(config, tmp_path, revision, keep)),
                metadata=ADMIN,
            )
            assert (published.revision, published.location) == (revision, store.target)
            await _until_decisions_carry(running, revision)
        assert list(published.tenants) == ["acme"] and published.previous_revision == "r1"

        rolled = await stub.Rollback(pb.RollbackRequest(revision="r1"), metadata=ADMIN)
        assert (rolled.revision, rolled.previous_revision) == ("r1", "r2")
        await _until_decisions_carry(running, "r1")
        listing = await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=ADMIN)
        assert [(r.revision, r.active) for r in listing.revisions] == [
            ("r2", False), ("r1", True)]  # fmt: skip
        log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=1), metadata=ADMIN)
        event = log.events[0]
        assert (event.action, event.outcome, event.old_revision, event.new_revision) == (
            "Rollback", "rolled_back", "r2", "r1")  # fmt: skip
        assert event.digest == rolled.digest


async def test_tampered_and_unsigned_bundles_never_replace_the_serving_revision(
    tmp_path: Path,
) -> None:
    async with _fleet_of_one("http", tmp_path) as (running, store):
        stub, config = admin_stub(running.channel), running.sidecar.config
        good = build_revision(config, tmp_path / "good", "good")

        def relabel_and_tamper(files: dict[str, bytes]) -> None:
            manifest = json.loads(files[".manifest"])
            manifest["revision"] = "evil"
            files[".manifest"] = json.dumps(manifest).encode()
            data = json.loads(files["data.json"])
            data["replication"]["settings"]["scan"]["max_age_days"] = 100000
            files["data.json"] = json.dumps(data).encode()  # signatures name the old hashes

        tampered = rewrite_bundle(good.path, tmp_path / "tampered.tar.gz", relabel_and_tamper)
        # Through the admin API: refused by validation, audited, never uploaded.
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.PublishBundle(
                pb.PublishBundleRequest(bundle=tampered.read_bytes()), metadata=ADMIN
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "signature: .signatures.json: does not verify" in (refused.value.details() or "")
        log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=1), metadata=ADMIN)
        assert (log.events[0].outcome, log.events[0].new_revision) == ("rejected", "evil")
        assert store.server is not None and store.server.etag("replication") != (
            f'"{bundle_from_file(tampered).digest}"')  # fmt: skip

        # Straight into the store (someone with write access): OPA refuses it on download.
        unsigned = rewrite_bundle(
            good.path, tmp_path / "unsigned.tar.gz", lambda f: f.pop(".signatures.json")
        )
        managed = running.sidecar.runtime.managed if running.sidecar.runtime else None
        assert managed is not None
        for bad, reason in ((tampered, "digest mismatch"), (unsigned, "missing .signatures.json")):
            before = _refusals(managed.output_tail(400), reason)
            await store.publish(bundle_from_file(bad))
            deadline = time.monotonic() + _DEADLINE_S
            while _refusals(managed.output_tail(400), reason) <= before:
                assert time.monotonic() < deadline, managed.output_tail(40)
                await asyncio.sleep(0.05)
            await _until_decisions_carry(running, "boot")  # still the last good revision
        assert running.sidecar.runtime is not None and running.sidecar.runtime.ready()


def _refusals(tail: str, reason: str) -> int:
    return sum(1 for line in tail.splitlines() if "Bundle load failed" in line and reason in line)


async def test_a_revision_published_around_the_admin_api_is_audited_as_activated(
    tmp_path: Path,
) -> None:
    async with _fleet_of_one("http", tmp_path) as (running, store):
        stub, config = admin_stub(running.channel), running.sidecar.config
        watcher = running.sidecar.revisions
        assert watcher is not None
        await stub.PublishBundle(
            pb.PublishBundleRequest(bundle=_bundle(config, tmp_path, "r1", 4)), metadata=ADMIN
        )
        await _until_decisions_carry(running, "r1")
        await _until_watched(watcher.check, "r1")
        # Straight into the store, as `policy-sidecar bundle publish --to` does.
        side = build_revision(config, tmp_path / "side", "side")
        await store.publish(side)
        await _until_decisions_carry(running, "side")
        await _until_watched(watcher.check, "side")

        log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=10), metadata=ADMIN)
        seen = [(e.action, e.outcome, e.old_revision, e.new_revision) for e in log.events]
        assert seen[:2] == [
            ("ActivateBundle", "activated", "r1", "side"),
            # "boot" came out of band, before this sidecar started: the admin never saw it.
            ("PublishBundle", "published", "", "r1"),
        ], "the admin publish must not be audited twice, the side publish must be audited"
        service = config.policy.bundle.service
        assert service is not None
        assert log.events[0].actor == f"bundle-service:{service.url}"
        admin = running.sidecar.admin
        assert admin is not None
        verification = await admin.audit.log.verify()
        assert verification.ok, verification


async def _until_watched(check: Callable[[], Awaitable[str]], revision: str) -> None:
    deadline = time.monotonic() + _DEADLINE_S
    while await check() != revision:
        assert time.monotonic() < deadline, f"OPA never reported {revision!r}"
        await asyncio.sleep(0.05)


async def test_a_change_that_cannot_be_audited_is_undone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (issue 15): PublishBundle and Rollback delivered the bundle, then failed to
    # append the audit record and left the new revision live with no record of it.
    async with _fleet_of_one("http", tmp_path) as (running, store):
        stub, config = admin_stub(running.channel), running.sidecar.config
        admin = running.sidecar.admin
        assert admin is not None
        log = admin.audit.log
        append = log.append

        async def read_only(event: object) -> object:
            raise sqlite3.OperationalError("attempt to write a readonly database")

        async def publish(revision: str, keep: int) -> pb.PublishBundleResponse:
            bundle = _bundle(config, tmp_path, revision, keep)
            return await stub.PublishBundle(pb.PublishBundleRequest(bundle=bundle), metadata=ADMIN)

        async def active() -> str:
            listing = await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=ADMIN)
            return next(r.revision for r in listing.revisions if r.active)

        r1 = await publish("r1", 4)
        await _until_decisions_carry(running, "r1")
        assert store.server is not None
        seq = (await log.list(limit=1))[0].seq

        monkeypatch.setattr(log, "append", read_only)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await publish("r2", 2)
        assert "audit record could not be written" in (failed.value.details() or "")
        assert "'r1' is active again" in (failed.value.details() or "")
        monkeypatch.setattr(log, "append", append)
        assert store.server.etag("replication") == f'"{r1.digest}"'  # the store serves r1 again
        await _until_decisions_carry(running, "r1")
        assert await active() == "r1"
        assert (await log.list(limit=1))[0].seq == seq  # nothing half-written

        r3 = await publish("r3", 3)
        await _until_decisions_carry(running, "r3")
        monkeypatch.setattr(log, "append", read_only)
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await stub.Rollback(pb.RollbackRequest(revision="r1"), metadata=ADMIN)
        assert "'r3' is active again" in (failed.value.details() or "")
        monkeypatch.setattr(log, "append", append)
        assert store.server.etag("replication") == f'"{r3.digest}"'
        await _until_decisions_carry(running, "r3")
        assert await active() == "r3"

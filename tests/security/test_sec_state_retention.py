"""Issue 15, item 10: finished state was never pruned, so whoever can add state grows it forever.

The attack: a policy author's token (a CI job gone wrong, or stolen) publishes revision after
revision through PolicyAdmin. Each publish archives the bundle in the job store for Rollback;
before the fix they were kept forever. With ``policy.replication.retention.keep_revisions`` the
periodic prune keeps the newest ones (the active one always), and the sidecar keeps serving the
latest revision. (Webhook events, jobs and deferrals age out by days: tests/integration/
test_store_retention.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes, write_data
from tests.support.security import assert_serving, metric_value
from tests.support.sidecar import running_sidecar

pytestmark = pytest.mark.integration

AUTHOR = bearer("policy-author-secret")
ADMIN = bearer("policy-admin-secret")
PUBLISHES = 5
KEEP = 2


async def test_a_publish_loop_does_not_grow_the_revision_archive_without_bound(
    tmp_path: Path,
) -> None:
    config = admin_config(tmp_path / "state")
    replication = config.policy.replication
    retention = dataclasses.replace(replication.retention, keep_revisions=KEEP, interval_s=1.0)
    config = dataclasses.replace(
        config,
        policy=dataclasses.replace(
            config.policy, replication=dataclasses.replace(replication, retention=retention)
        ),
    )
    async with running_sidecar(config) as running:
        stub = admin_stub(running.channel)
        for n in range(PUBLISHES):
            retention_n = {"acme": {"retention": {"keep_last": n + 1, "older_than_days": 5}}}
            overlay = write_data(tmp_path / f"o{n}", "replication/tenants", retention_n)
            bundle = build_bundle_bytes(
                config, tmp_path / f"b{n}.tar.gz", f"loop-{n}", overlays=(overlay,)
            )
            await stub.PublishBundle(pb.PublishBundleRequest(bundle=bundle), metadata=AUTHOR)

        deadline = time.monotonic() + 30
        while True:
            listing = await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=ADMIN)
            kept = [r.revision for r in listing.revisions]
            if len(kept) <= KEEP:
                break
            assert time.monotonic() < deadline, f"still {len(kept)} revisions archived: {kept}"
            await asyncio.sleep(0.2)
        assert kept[0] == f"loop-{PUBLISHES - 1}"
        assert [r.revision for r in listing.revisions if r.active] == [f"loop-{PUBLISHES - 1}"]
        pruned = await metric_value(
            running, "policy_sidecar_pruned_rows_total", {"kind": "revisions"}
        )
        assert pruned >= PUBLISHES - KEEP
        assert (await assert_serving(running)).bundle_revision == f"loop-{PUBLISHES - 1}"

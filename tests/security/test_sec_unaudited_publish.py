"""Issue 15, the smaller list: a publish whose audit write failed left a live, unrecorded bundle.

The attack: someone who can make the audit write fail (here the database refuses the sidecar's
role INSERT on ``audit_log``; a full disk or a lost privilege does the same) publishes a bundle.
Before the fix, the bundle went live and the publish failed afterwards, leaving a policy change
with no audit record. Now the previous revision is delivered again, the call fails saying so, and
once the audit log is writable again publishing works: the process kept serving throughout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import psycopg
import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.config import Config
from tests.support.admin import admin_config, admin_stub, bearer, build_bundle_bytes, write_data
from tests.support.security import assert_serving
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = pytest.mark.integration

ADMIN = bearer("policy-admin-secret")


@pytest.fixture
def sidecar_role(postgres_dsn: str) -> Iterator[tuple[str, str]]:
    """(the sidecar's own DSN, the superuser's DSN) of a fresh database the sidecar's role owns."""
    role, password = f"sidecar_{uuid.uuid4().hex[:8]}", "sidecar-password"
    parts = urlsplit(postgres_dsn)
    database = parts.path.lstrip("/")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        conn.execute(f'ALTER DATABASE "{database}" OWNER TO {role}')
    own = f"postgresql://{role}:{password}@{parts.hostname}:{parts.port}/{database}"
    try:
        yield own, postgres_dsn
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"REASSIGN OWNED BY {role} TO postgres")
            conn.execute(f"DROP OWNED BY {role}")
        postgres = postgres_dsn.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(postgres, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{database}" OWNER TO postgres')
            conn.execute(f"DROP ROLE {role}")


def _bundle(config: Config, work: Path, revision: str, keep_last: int) -> bytes:
    data = {"acme": {"retention": {"keep_last": keep_last, "older_than_days": 5}}}
    overlay = write_data(work / f"o-{revision}", "replication/tenants", data)
    return build_bundle_bytes(config, work / f"{revision}.tar.gz", revision, overlays=(overlay,))


async def _serving(running: RunningSidecar, revision: str) -> None:
    deadline = time.monotonic() + 30
    while (await assert_serving(running)).bundle_revision != revision:
        assert time.monotonic() < deadline, f"decisions never carried {revision!r}"
        await asyncio.sleep(0.1)


async def test_a_publish_that_cannot_be_audited_is_undone(
    tmp_path: Path, sidecar_role: tuple[str, str]
) -> None:
    own, superuser = sidecar_role
    config = admin_config(tmp_path / "state")
    replication = dataclasses.replace(config.policy.replication, store=own)
    config = dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, replication=replication)
    )
    async with running_sidecar(config) as running:
        stub = admin_stub(running.channel)

        async def publish(revision: str, keep_last: int) -> pb.PublishBundleResponse:
            bundle = _bundle(config, tmp_path, revision, keep_last)
            return await stub.PublishBundle(pb.PublishBundleRequest(bundle=bundle), metadata=ADMIN)

        await publish("r1", 4)
        await _serving(running, "r1")
        role = urlsplit(own).username
        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute(f"REVOKE INSERT ON audit_log FROM {role}")
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await publish("r2", 2)
        details = failed.value.details() or ""
        assert "audit record could not be written" in details, details
        assert "'r1' is active again" in details, details
        await _serving(running, "r1")
        listing = await stub.ListRevisions(pb.ListRevisionsRequest(), metadata=ADMIN)
        assert [r.revision for r in listing.revisions if r.active] == ["r1"]

        with psycopg.connect(superuser, autocommit=True) as conn:
            conn.execute(f"GRANT INSERT ON audit_log TO {role}")
        await publish("r3", 3)
        await _serving(running, "r3")
        log = await stub.GetAuditLog(pb.GetAuditLogRequest(limit=10), metadata=ADMIN)
        published = [e.new_revision for e in log.events if e.action == "PublishBundle"]
        assert "r2" not in published and {"r1", "r3"} <= set(published), published

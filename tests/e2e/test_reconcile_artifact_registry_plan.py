"""A reconcile plans against what the Artifact Registry API lists (issue 13 item 1).

A real ``docker-registry`` is the source ``ci``; ``gar-us`` is an Artifact Registry listed through
the fake API (tests/support/artifact_registry.py). A rule sends ``web/*`` to
``acme-prod/apps/{repository}``, the path Artifact Registry serves. The serving sidecar (real OPA,
default bundle) plans ``keep`` for the image the API lists at that digest, ``copy`` for the one it
lacks, and a blocked ``retag`` for a tag the API shows at another digest (the sidecar never wrote
it there).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.oci import RegistryClients
from tests.support.admin import write_data
from tests.support.artifact_registry import Image, fake_artifact_registry
from tests.support.images import push_image, registry_config
from tests.support.registry import registry_server
from tests.support.security import attacked_sidecar, registry_entry, scanned_labels, sidecar_config

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(180), pytest.mark.clock]

HOST = "us-east1-docker.pkg.dev"
TO_GAR = {"id": "to-gar", "match": {"repository": "web/*"},
          "set": {"destination_repository": "acme-prod/apps/{repository}"}}  # fmt: skip
OTHER = "sha256:" + "e" * 64


async def test_the_plan_keeps_copies_and_refuses_by_what_the_api_lists(tmp_path: Path) -> None:
    with registry_server(tmp_path / "ci") as ci:
        clients = RegistryClients([registry_config("ci", ci.url)])
        try:
            labels = scanned_labels()
            app = await push_image(
                clients.get("ci"), "web/app", tag="prod-1.0", seed=1, labels=labels
            )
            await push_image(clients.get("ci"), "web/api", tag="prod-1.0", seed=2, labels=labels)
            await push_image(clients.get("ci"), "web/ui", tag="prod-1.0", seed=3, labels=labels)
        finally:
            await clients.close()
        async with fake_artifact_registry() as api:
            api.repositories = {"apps": "DOCKER"}
            api.images = [
                Image("apps", "web/app", app.digest, ("prod-1.0",)),
                Image("apps", "web/ui", OTHER, ("prod-1.0",)),
            ]
            gar = registry_entry(
                "gar-us", f"https://{HOST}", type="gar", project=api.project,
                location=api.location,
                auth={"type": "token", "username": "oauth2accesstoken", "token": api.token},
            )  # fmt: skip
            gar["metadata"]["api_endpoint"] = api.url
            data = write_data(tmp_path / "rules", "replication/rules", [TO_GAR])
            doc = sidecar_config(
                [registry_entry("ci", ci.url, environment="ci"), gar],
                reconcile={"sources": ["ci"]},
                replication={"registry_enrichment": True},
                bundle={"data_dirs": [str(data)]},
            )
            async with attacked_sidecar(doc, tmp_path / "sidecar") as running:
                events = [e async for e in running.stub.Reconcile(pb.ReconcileRequest())]
    planned = {
        (e.planned.kind, f"{e.planned.registry}/{e.planned.repository}:{e.planned.tag}",
         bool(e.planned.blocked))
        for e in events if e.WhichOneof("event") == "planned"
    }  # fmt: skip
    assert planned == {
        ("keep", "gar-us/acme-prod/apps/web/app:prod-1.0", False),
        ("copy", "gar-us/acme-prod/apps/web/api:prod-1.0", False),
        ("retag", "gar-us/acme-prod/apps/web/ui:prod-1.0", True),
    }
    [summary] = [e.summary for e in events if e.WhichOneof("event") == "summary"]
    assert dict(summary.unreadable) == {} and summary.images == 3
    # Every API request carried the registry's token; no OCI request went to gar-us's endpoint
    # (unreachable here: it would have made the registry unreadable).
    assert {auth for _, _, auth in api.requests} == {f"Bearer {api.token}"}

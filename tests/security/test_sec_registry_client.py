"""Issue 15, registry client hygiene: a hostile registry gets no credentials and cannot flood us.

The findings: registry ``Authorization`` went to token realms and upload locations on other hosts,
plain http included; manifest and referrer bodies had no size cap; the copier's index fan-out was
unbounded. Each attack is a hostile registry (an aiohttp server on loopback) that the running
sidecar reads while deciding (registry enrichment) or copying (a Replicate job).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from sidecar._proto import policy_pb2 as pb
from sidecar.oci import OCI_INDEX, OCI_MANIFEST, digest_of
from sidecar.oci._auth import basic_header
from tests.support.fake_registry import fake_server
from tests.support.security import (
    assert_serving,
    attacked_sidecar,
    decide_request,
    inventory,
    registry_entry,
    sidecar_config,
    streamed_body,
)

pytestmark = pytest.mark.integration

ROBOT = {"type": "basic", "username": "robot", "password": "robot-password"}
MAX_MANIFEST = 4 << 20


def _with_source(endpoint: str, **fields: object) -> list[dict[str, object]]:
    registries = inventory()
    registries[0] = registry_entry("ci", endpoint, environment="ci", **fields)
    return registries


async def test_a_token_realm_on_another_host_gets_no_credentials(tmp_path: Path) -> None:
    realm = [""]

    async def tokens(request: web.Request) -> web.StreamResponse:
        return web.json_response({"token": "anonymous-token"})

    async def registry(request: web.Request) -> web.StreamResponse:
        # Whatever is asked: "authenticate at my realm" — which lives on the attacker's host.
        challenge = f'Bearer realm="{realm[0]}/token",service="ci"'
        return web.Response(status=401, headers={"WWW-Authenticate": challenge})

    async with fake_server(tokens) as attacker, fake_server(registry) as source:
        realm[0] = attacker.url
        doc = sidecar_config(
            _with_source(source.url, auth=ROBOT), replication={"registry_enrichment": True}
        )
        async with attacked_sidecar(doc, tmp_path) as running:
            for i in range(3):
                await running.stub.Decide(decide_request(i), timeout=30)
            await assert_serving(running)
    # The registry's own origin may see its credentials; the realm on another host never does.
    assert basic_header("robot", "robot-password") in {s.authorization for s in source.seen}
    assert attacker.authorized() == [], attacker.authorized()


async def test_an_oversized_manifest_is_cut_off_and_the_decision_still_served(
    tmp_path: Path,
) -> None:
    offered = 128 << 20
    sent: list[int] = []

    async def registry(request: web.Request) -> web.StreamResponse:
        if "/manifests/" not in request.path:
            return web.Response(status=200 if request.path == "/v2/" else 404)
        resp, count = await streamed_body(request, offered, content_type=OCI_MANIFEST)
        sent.append(count)
        return resp

    async with fake_server(registry) as source:
        doc = sidecar_config(_with_source(source.url), replication={"registry_enrichment": True})
        async with attacked_sidecar(doc, tmp_path) as running:
            started = time.monotonic()
            answer = await running.stub.Decide(decide_request(7), timeout=60)
            assert answer.decision_id and not answer.degraded
            explained = await running.stub.Explain(
                pb.ExplainRequest(decision_id=answer.decision_id), timeout=10
            )
            facts = orjson.loads(explained.input_json)["image"]
            assert facts["platforms"] == ["linux/amd64"]  # the request's: no registry facts read
            await assert_serving(running)
            assert time.monotonic() - started < 30
            for _ in range(100):  # the hostile server notices the reset a little later
                if sent:
                    break
                await asyncio.sleep(0.05)
    assert sent, "the registry was never asked for the manifest"
    # The sidecar stopped reading a little after 4 MiB; socket buffers took some more.
    assert max(sent) < offered // 4, f"{max(sent)} of {offered} bytes taken from the attacker"


def _index_of(children: int) -> tuple[bytes, dict[str, bytes]]:
    docs = {}
    for i in range(children):
        doc = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                            "annotations": {"i": str(i)}})  # fmt: skip
        docs[digest_of(doc)] = doc
    entries = [{"mediaType": OCI_MANIFEST, "digest": d, "size": len(b)} for d, b in docs.items()]
    index = orjson.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
    return index, docs


async def test_an_index_with_thousands_of_children_fails_before_any_is_fetched(
    tmp_path: Path,
) -> None:
    index, children = _index_of(5000)
    child_gets = [0]

    async def registry(request: web.Request) -> web.StreamResponse:
        reference = request.path.rsplit("/", 1)[-1]
        if "/manifests/" not in request.path:
            return web.Response(status=200 if request.path == "/v2/" else 404)
        if reference == digest_of(index):
            return web.Response(body=index, content_type=OCI_INDEX)
        if reference in children:
            child_gets[0] += 1
            return web.Response(body=children[reference], content_type=OCI_MANIFEST)
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)

    async def empty(request: web.Request) -> web.StreamResponse:
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN"}]}, status=404)

    async with fake_server(registry) as hostile, fake_server(empty) as destination:
        registries = [
            registry_entry("ci", hostile.url, environment="ci"),
            registry_entry("dev-us", destination.url, environment="dev"),
        ]
        async with attacked_sidecar(sidecar_config(registries), tmp_path) as running:
            request = decide_request(1)
            request.image.digest = digest_of(index)
            request.image.repository = "team/app"
            outcome = await running.stub.Replicate(pb.ReplicateRequest(request=request), timeout=30)
            assert outcome.job_ids, outcome
            deadline = time.monotonic() + 60
            while True:
                job = await running.stub.GetJob(pb.GetJobRequest(job_id=outcome.job_ids[0]))
                if job.state == "failed":
                    break
                assert time.monotonic() < deadline, job
                await asyncio.sleep(0.1)
            assert "more than 1000 index children and referrers" in job.error, job.error
            await assert_serving(running)
    assert child_gets[0] == 0


async def test_an_upload_location_on_another_host_gets_no_credentials(tmp_path: Path) -> None:
    layer, config_blob = b"layer bytes " * 1000, b'{"architecture":"amd64","os":"linux"}'
    blobs = {digest_of(layer): layer, digest_of(config_blob): config_blob}
    manifest = orjson.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest_of(config_blob), "size": len(config_blob)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest_of(layer), "size": len(layer)}],
    })  # fmt: skip
    foreign_url = [""]

    async def source(request: web.Request) -> web.StreamResponse:
        reference = request.path.rsplit("/", 1)[-1]
        if "/manifests/" in request.path and reference == digest_of(manifest):
            return web.Response(body=manifest, content_type=OCI_MANIFEST)
        if "/blobs/" in request.path and reference in blobs:
            return web.Response(body=blobs[reference])
        return web.json_response({"errors": [{"code": "UNKNOWN"}]}, status=404)

    async def destination(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.method == "POST" and request.path.endswith("/blobs/uploads/"):
            # The hostile (or misconfigured) registry sends the upload elsewhere.
            return web.Response(status=202, headers={"Location": f"{foreign_url[0]}/up/1?s=1"})
        if request.method == "PUT" and "/manifests/" in request.path:
            return web.Response(status=201, headers={"Docker-Content-Digest": digest_of(manifest)})
        return web.json_response({"errors": [{"code": "UNKNOWN"}]}, status=404)

    async def foreign(request: web.Request) -> web.StreamResponse:
        await request.read()
        if request.method == "PATCH":
            return web.Response(status=202, headers={"Location": f"{foreign_url[0]}/up/1?s=2"})
        return web.Response(status=201 if request.method == "PUT" else 404)

    async with (
        fake_server(source) as src,
        fake_server(destination) as dst,
        fake_server(foreign) as attacker,
    ):
        foreign_url[0] = attacker.url
        registries = [
            registry_entry("ci", src.url, environment="ci"),
            registry_entry("dev-us", dst.url, environment="dev", auth=ROBOT),
        ]
        async with attacked_sidecar(sidecar_config(registries), tmp_path) as running:
            request = decide_request(2)
            request.image.digest = digest_of(manifest)
            outcome = await running.stub.Replicate(pb.ReplicateRequest(request=request), timeout=30)
            assert outcome.job_ids, outcome
            deadline = time.monotonic() + 60
            while True:
                job = await running.stub.GetJob(pb.GetJobRequest(job_id=outcome.job_ids[0]))
                if job.state in ("failed", "succeeded"):
                    break
                assert time.monotonic() < deadline, job
                await asyncio.sleep(0.1)
            await assert_serving(running)
    assert {s.method for s in attacker.seen} >= {"PATCH", "PUT"}, attacker.seen
    assert attacker.authorized() == [], attacker.authorized()
    assert basic_header("robot", "robot-password") in {s.authorization for s in dst.seen}

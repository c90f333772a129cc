"""Issue 15, item 2: facts callers cannot forge — attacks on a real ``policy-sidecar serve`` process.

The sidecar runs as its own process (managed OPA, default bundle) and reads image facts from a
real CNCF Distribution registry. Each attack states a fact in the request that the registry or the
sidecar knows better; the decision must rest on the observed fact, Explain must say where each fact
came from and which stated ones were dropped, and the process must keep serving. A caller holding
an override role (a replay) is believed for what nothing observed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
import yaml

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.oci import RegistryClients
from tests.fault.process import CHANNEL_OPTIONS, running_process
from tests.support.images import (
    push_image,
    push_scan_attestation,
    registry_config,
    scanned_labels,
)
from tests.support.ports import free_port
from tests.support.registry import registry_server

# clock: scan ages are measured against the sidecar's wall clock
pytestmark = [pytest.mark.integration, pytest.mark.clock, pytest.mark.timeout(300)]

PROD = ("prod-eu", "prod-us", "globex-prod")
#: name → (region, environment, gdpr, dedicated tenants)
INVENTORY = {
    "ci": ("us-east-1", "ci", False, []),
    "prod-eu": ("eu-west-1", "prod", True, []),
    "prod-us": ("us-east-1", "prod", False, []),
    "globex-prod": ("us-east-1", "prod", False, ["globex"]),
}
CR = "compliance-required"
NO_ROLE = pb.Caller(subject="ci-bot", roles=["replicator"])
REPLAYER = pb.Caller(subject="replayer", roles=["replay"])


def _rfc3339(moment: dt.datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


NOW = dt.datetime.now(dt.UTC)
STALE_SCAN = NOW - dt.timedelta(days=30)  # older than the default 7-day maximum scan age
FORGED_SCAN = scanned_labels()  # "passed", an hour ago, no critical finding


class Sidecar:
    """The running sidecar's PolicyService, plus the digests of the images pushed for the attacks."""

    def __init__(self, stub: pb_grpc.PolicyServiceStub, digests: Mapping[str, str]) -> None:
        self.stub, self.digests = stub, digests

    async def decide(
        self,
        repository: str,
        labels: Mapping[str, str] | None = None,
        caller: pb.Caller = NO_ROLE,
        **fields: Any,
    ) -> pb.DecideResponse:
        image = pb.Image(registry="ci", repository=repository, tag="prod-1", labels=labels or {})
        request = pb.DecideRequest(image=image, caller=caller, **fields)
        return await self.stub.Decide(request, timeout=30)

    async def explain(self, answer: pb.DecideResponse) -> tuple[dict[str, Any], dict[str, Any]]:
        """The (input, provenance) Explain returns for ``answer``."""
        record = await self.stub.Explain(pb.ExplainRequest(decision_id=answer.decision_id))
        return json.loads(record.input_json), json.loads(record.provenance_json)

    async def still_serving(self) -> None:
        answer = await self.decide("team/failed")
        assert answer.decision_id and not answer.degraded


def _config(root: Path, registry_url: str, port: int) -> Path:
    doc = {
        "registries": [
            {
                "name": name,
                "type": "generic",
                "endpoint": registry_url,  # one real registry behind every name: all healthy
                "region": region,
                "metadata": {
                    "environment": environment,
                    "gdpr": gdpr,
                    "role": "primary",
                    "tenants": tenants,
                    "egress_cost_per_gb": 0.01,
                },
            }
            for name, (region, environment, gdpr, tenants) in INVENTORY.items()
        ],
        "policy": {
            "listen": f"127.0.0.1:{port}",
            "metrics_listen": f"127.0.0.1:{free_port()}",
            "state_dir": str(root / "state"),
            "bundle": {"output": str(root / "state" / "bundle.tar.gz")},
            "tenancy": {
                "tenants": ["acme", "globex"],
                "prefixes": {"acme/": "acme", "globex/": "globex"},
                "usage": {"acme": {"storage_used_bytes": 50, "storage_limit_bytes": 10}},
            },
        },
    }
    path = root / "sidecar.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


async def _push_images(url: str) -> dict[str, str]:
    clients = RegistryClients([registry_config("ci", url)])
    try:
        ci = clients.get("ci")
        failed = scanned_labels(**{"security.scan.status": "failed", "security.scan.critical": "2"})
        stale = scanned_labels(**{"security.scan.completed-at": _rfc3339(STALE_SCAN)})
        pushed = {
            "team/unscanned": await push_image(ci, "team/unscanned", tag="prod-1", seed=1),
            "team/failed": await push_image(ci, "team/failed", tag="prod-1", seed=2, labels=failed),
            "team/gdpr": await push_image(
                ci, "team/gdpr", tag="prod-1", seed=3, labels=scanned_labels(**{CR: "true"})
            ),
            "acme/app": await push_image(
                ci, "acme/app", tag="prod-1", seed=4, labels=scanned_labels()
            ),
            "team/stale": await push_image(ci, "team/stale", tag="prod-1", seed=5, labels=stale),
            "team/attested": await push_image(ci, "team/attested", tag="prod-1", seed=6),
        }
        await push_scan_attestation(
            ci, "team/attested", pushed["team/attested"].digest,
            status="failed", critical=1, completed_at=_rfc3339(NOW - dt.timedelta(hours=1)),
        )  # fmt: skip
        return {repo: image.digest for repo, image in pushed.items()}
    finally:
        await clients.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sidecar(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Sidecar]:
    root = tmp_path_factory.mktemp("forged-facts")
    with registry_server(root / "registry") as registry:
        digests = await _push_images(registry.url)
        port = free_port()
        config = _config(root, registry.url, port)
        with running_process(config, root / "sidecar.log", f"127.0.0.1:{port}") as process:
            await process.wait_ready()
            async with grpc.aio.insecure_channel(process.address, options=CHANNEL_OPTIONS) as ch:
                yield Sidecar(pb_grpc.PolicyServiceStub(ch), digests)
            assert process.alive, process.log_tail()


def _denied(answer: pb.DecideResponse) -> dict[str, list[str]]:
    return {d.registry: list(d.reasons) for d in answer.decision.denied}


def _dropped(provenance: Mapping[str, Any]) -> dict[str, str]:
    return {d["fact"]: d["reason"] for d in provenance["dropped"]}


@pytest.mark.asyncio(loop_scope="module")
async def test_a_claimed_passed_scan_is_not_believed(sidecar: Sidecar) -> None:
    # No scan on the image in the registry: the claim is dropped, prod refuses it unscanned.
    answer = await sidecar.decide("team/unscanned", FORGED_SCAN)
    assert {r: _denied(answer)[r][0] for r in PROD} == dict.fromkeys(PROD, "SCAN_MISSING")
    policy_input, provenance = await sidecar.explain(answer)
    assert policy_input["image"]["labels"] == {} and policy_input["image"]["scan"] is None
    assert policy_input["image"]["digest"] == sidecar.digests["team/unscanned"]
    dropped = _dropped(provenance)
    assert set(dropped) == {f"image.labels.{k}" for k in FORGED_SCAN}
    assert all("not on the image in the registry" in reason for reason in dropped.values())
    assert provenance["facts"]["now"] == "sidecar"
    assert provenance["facts"]["image.size_bytes"] == "registry"

    # A failed scan in the registry's labels stays failed whatever the request says.
    answer = await sidecar.decide("team/failed", FORGED_SCAN)
    assert all("SCAN_FAILED" in _denied(answer)[r] for r in PROD)
    policy_input, provenance = await sidecar.explain(answer)
    assert policy_input["image"]["scan"]["status"] == "failed"
    assert provenance["facts"]["image.labels.security.scan.status"] == "registry"
    assert provenance["facts"]["image.scan"] == "registry"
    assert _dropped(provenance)["image.labels.security.scan.status"] == "the registry's value wins"

    # So does a failed scan attestation, a replaying caller's labels notwithstanding.
    answer = await sidecar.decide("team/attested", FORGED_SCAN, caller=REPLAYER)
    assert all("SCAN_FAILED" in _denied(answer)[r] for r in PROD)
    policy_input, provenance = await sidecar.explain(answer)
    assert policy_input["image"]["scan"]["source"] == "attestation"
    assert provenance["facts"]["image.scan"] == "registry"
    await sidecar.still_serving()


@pytest.mark.asyncio(loop_scope="module")
async def test_claiming_no_compliance_requirement_is_not_believed(sidecar: Sidecar) -> None:
    answer = await sidecar.decide("team/gdpr", {"compliance-required": "false"})
    assert [r.registry for r in answer.decision.routes] == ["prod-eu"]
    assert _denied(answer)["prod-us"] == ["NOT_GDPR"]
    policy_input, provenance = await sidecar.explain(answer)
    assert policy_input["image"]["labels"]["compliance-required"] == "true"
    assert provenance["facts"]["image.labels.compliance-required"] == "registry"
    assert _dropped(provenance) == {"image.labels.compliance-required": "the registry's value wins"}
    await sidecar.still_serving()


@pytest.mark.asyncio(loop_scope="module")
async def test_claiming_another_tenant_is_not_believed(sidecar: Sidecar) -> None:
    # acme's image (by repository prefix), asked about by globex with a forged tenant label.
    globex = pb.Caller(subject="globex-ci", tenant="globex")
    answer = await sidecar.decide("acme/app", {"tenant": "globex"}, caller=globex)
    assert not answer.decision.allow and not answer.decision.routes
    assert "CROSS_TENANT" in {r.code for r in answer.decision.reasons}
    policy_input, provenance = await sidecar.explain(answer)
    assert policy_input["image"]["tenant"] == "acme"
    assert provenance["facts"]["image.tenant"] == "config"
    assert "image.labels.tenant" in _dropped(provenance)

    # Without a caller tenant, globex's dedicated registry still refuses acme's image.
    answer = await sidecar.decide("acme/app", {"tenant": "globex"})
    assert "TENANT_ISOLATION" in _denied(answer)["globex-prod"]
    await sidecar.still_serving()


@pytest.mark.asyncio(loop_scope="module")
async def test_gate_facts_about_an_image_the_registry_cannot_show_are_not_believed(
    sidecar: Sidecar,
) -> None:
    # The tag does not exist: nothing is observed, so a stated scan is no scan (fail-safe)...
    answer = await sidecar.decide("team/ghost", FORGED_SCAN)
    assert {r: _denied(answer)[r][0] for r in PROD} == dict.fromkeys(PROD, "SCAN_MISSING")
    _, provenance = await sidecar.explain(answer)
    assert all("registry was not read" in r for r in _dropped(provenance).values())
    # ...unless a replaying caller states it.
    answer = await sidecar.decide("team/ghost", FORGED_SCAN, caller=REPLAYER)
    assert {r.registry for r in answer.decision.routes} == {"prod-eu", "prod-us"}
    _, provenance = await sidecar.explain(answer)
    assert provenance["facts"]["image.scan"] == "request" and provenance["dropped"] == []
    await sidecar.still_serving()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("now", _rfc3339(STALE_SCAN + dt.timedelta(days=1))),  # would make the stale scan fresh
        ("registry_health", {"prod-us": False, "prod-eu": False}),
        ("tenant_usage", pb.TenantUsage(id="acme", storage_used_bytes=1, storage_limit_bytes=10)),
        ("access", {"us-east-1": 1_000_000}),
    ],
    ids=["now", "registry_health", "tenant_usage", "access"],
)
@pytest.mark.asyncio(loop_scope="module")
async def test_sidecar_facts_from_a_caller_without_a_role_are_refused(
    sidecar: Sidecar, field: str, value: Any
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.decide("team/stale", **{field: value})
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    assert details.startswith(f"{field}: only a caller with a role in policy.facts.override_roles")
    await sidecar.still_serving()


@pytest.mark.asyncio(loop_scope="module")
async def test_a_replaying_caller_is_believed_and_explain_says_so(sidecar: Sidecar) -> None:
    # On the sidecar's clock the scan is 30 days old: nothing may be replicated.
    today = await sidecar.decide("team/stale")
    assert not today.decision.allow
    assert "SCAN_EXPIRED" in {r.code for r in today.decision.reasons}

    then = _rfc3339(STALE_SCAN + dt.timedelta(days=1))
    answer = await sidecar.decide(
        "team/stale",
        caller=REPLAYER,
        now=then,
        registry_health={"prod-us": False},
        access={"eu-west-1": 500},
    )
    assert answer.decision.allow
    assert [r.registry for r in answer.decision.routes] == ["prod-eu"]
    assert {d.registry: d.reason for d in answer.decision.deferred} == {
        "prod-us": "REGISTRY_UNAVAILABLE"
    }
    policy_input, provenance = await sidecar.explain(answer)
    assert policy_input["now"] == then
    facts = provenance["facts"]
    assert facts["now"] == "request"
    assert facts["registries.prod-us.healthy"] == "request"
    assert facts["access.eu-west-1"] == "request"
    assert facts["image.labels.security.scan.completed-at"] == "registry"
    assert provenance["dropped"] == []

    # A replayed tenant usage under the limit: acme's configured usage (over it) is not used.
    usage = pb.TenantUsage(id="acme", storage_used_bytes=1, storage_limit_bytes=10)
    answer = await sidecar.decide("acme/app", caller=REPLAYER, tenant_usage=usage)
    assert not answer.decision.actions
    assert (await sidecar.explain(answer))[1]["facts"]["tenant"] == "request"
    configured = await sidecar.decide("acme/app")
    assert [a.type for a in configured.decision.actions] == ["cleanup"]
    await sidecar.still_serving()


@pytest.mark.asyncio(loop_scope="module")
async def test_streamed_and_replicated_requests_are_held_to_the_same_rules(
    sidecar: Sidecar,
) -> None:
    image = pb.Image(registry="ci", repository="team/unscanned", tag="prod-1", labels=FORGED_SCAN)
    fake_now = _rfc3339(NOW + dt.timedelta(days=1))

    async def requests() -> AsyncIterator[pb.DecideRequest]:
        yield pb.DecideRequest(image=image, caller=NO_ROLE, request_id="forged-scan")
        yield pb.DecideRequest(image=image, caller=NO_ROLE, now=fake_now, request_id="fake-now")

    answers = {a.request_id: a async for a in sidecar.stub.DecideStream(requests(), timeout=60)}
    assert (answers["fake-now"].error.code, answers["fake-now"].error.field) == (
        "invalid_argument",
        "now",
    )
    forged = answers["forged-scan"]
    assert not forged.HasField("error")
    assert {r: _denied(forged)[r][0] for r in PROD} == dict.fromkeys(PROD, "SCAN_MISSING")

    # Replicate decides the same way: no job for a registry the forged scan would have opened.
    dry = pb.ReplicateRequest(request=pb.DecideRequest(image=image, caller=NO_ROLE), dry_run=True)
    replicated = await sidecar.stub.Replicate(dry, timeout=30)
    assert not replicated.decision.decision.routes and not replicated.job_ids
    insisting = pb.DecideRequest(image=image, caller=NO_ROLE, access={"us-east-1": 10**6})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.stub.Replicate(pb.ReplicateRequest(request=insisting), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    await sidecar.still_serving()

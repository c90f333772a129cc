"""Issue 15 item 8, attacked through a running sidecar (gRPC, its prober, real registries).

The fleet's ``prod-eu`` sits behind htpasswd and its credentials live in AWS Secrets Manager
(moto). Before the fix the sidecar read ``use_secrets_manager`` and went anonymous; now:

* a secret that cannot be used (missing, malformed) fails prod-eu's jobs loudly, naming the
  registry and the secret, marks prod-eu down with that reason, and never sends prod-eu a
  request without credentials, while the other registries and the API keep working;
* the secret's value appears nowhere: job errors, Explain, health, logs;
* a registry whose token realm is another origin over plain http gets the credentials only on
  its own origin: the foreign realm never sees them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from aiohttp import web

from sidecar._proto import policy_pb2 as pb
from sidecar.config import Config, load_config
from sidecar.health.breaker import HealthState
from sidecar.health.monitor import HealthMonitor
from sidecar.oci import RegistryClients
from sidecar.testing import CapturedLogs
from tests.support.fleet import Fleet, registry_fleet
from tests.support.images import push_image, scanned_labels
from tests.support.moto import MotoServer, moto_server
from tests.support.ports import free_port
from tests.support.sidecar import RunningSidecar, isolated_config, running_sidecar

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240), pytest.mark.clock]

SECRET = "fleet/prod-eu"
HEALTH = {"interval_s": 1.0, "failure_threshold": 2, "min_dwell_s": 0}


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """moto's Secrets Manager, its fake AWS credentials in the environment (boto3's chain)."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    with registry_fleet(tmp_path / "fleet", health=HEALTH) as running:
        yield running


def _put(moto: MotoServer, name: str, value: str) -> None:
    sm = boto3.client("secretsmanager", endpoint_url=moto.endpoint_url, region_name=moto.region)
    try:
        sm.put_secret_value(SecretId=name, SecretString=value)
    except sm.exceptions.ResourceNotFoundException:
        sm.create_secret(Name=name, SecretString=value)


def _managed_config(fleet: Fleet, moto: MotoServer, state: Path, secret: str) -> Config:
    """The fleet's config with prod-eu's password moved into the secret manager."""
    doc: dict[str, Any] = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    for entry in doc["registries"]:
        if entry["name"] == "prod-eu":
            entry["auth"] = {"type": "basic", "use_secrets_manager": True, "secret_name": secret}
    doc["secrets"] = {"awsSecretRegion": moto.region, "awsEndpointUrl": moto.endpoint_url}
    path = fleet.config_path.with_name(f"managed-{state.name}.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return isolated_config(load_config(path), state)


async def _push(fleet: Fleet, repo: str, tag: str, seed: int) -> str:
    clients = RegistryClients(load_config(fleet.config_path).registries)
    try:
        labels = scanned_labels(**{"security.scan.high": "1", "criticality": "high"})
        return (await push_image(clients.get("ci"), repo, tag=tag, seed=seed, labels=labels)).digest
    finally:
        await clients.close()


async def _replicate(running: RunningSidecar, repo: str, tag: str) -> pb.ReplicateResponse:
    request = pb.DecideRequest(image=pb.Image(registry="ci", repository=repo, tag=tag))
    answer: pb.ReplicateResponse = await running.stub.Replicate(
        pb.ReplicateRequest(request=request), timeout=30
    )
    return answer


async def _settled(
    running: RunningSidecar, job_ids: list[str], timeout_s: float = 90
) -> dict[str, pb.Job]:
    """Wait until every job is terminal; return them by destination registry."""
    deadline = time.monotonic() + timeout_s
    while True:
        jobs = [await running.stub.GetJob(pb.GetJobRequest(job_id=i), timeout=10) for i in job_ids]
        if all(j.state in ("succeeded", "failed", "skipped") for j in jobs):
            return {j.destination.split("/", 1)[0]: j for j in jobs}
        assert time.monotonic() < deadline, [(j.destination, j.state, j.error) for j in jobs]
        await asyncio.sleep(0.2)


def _requests_logged(fleet: Fleet, name: str) -> int:
    """Requests the registry has logged (docker-registry logs every response it completes)."""
    log = fleet.servers[name].root / "registry.log"
    return log.read_text(encoding="utf-8", errors="replace").count("http.request.uri=")


def _monitor(running: RunningSidecar) -> HealthMonitor:
    parts = running.sidecar.parts
    assert parts is not None and parts.health is not None
    return parts.health


async def _down(monitor: HealthMonitor, registry: str) -> None:
    await monitor.wait_for(registry, HealthState.UNHEALTHY, timeout_s=60)


async def test_a_missing_secret_fails_the_registry_loudly_never_anonymously(
    fleet: Fleet, moto: MotoServer, tmp_path: Path
) -> None:
    await _push(fleet, "web/app", "prod-1.0", seed=1)
    config = _managed_config(fleet, moto, tmp_path / "state", "fleet/absent")
    before = _requests_logged(fleet, "prod-eu")
    async with running_sidecar(config) as running:
        answer = await _replicate(running, "web/app", "prod-1.0")
        jobs = await _settled(running, list(answer.job_ids))
        assert set(jobs) == {"prod-eu", "prod-us"}
        # The other destination is unaffected; prod-eu's job failed and says why.
        assert jobs["prod-us"].state == "succeeded"
        failed = jobs["prod-eu"]
        assert failed.state == "failed"
        assert failed.error.startswith("registry prod-eu: auth: AWS Secrets Manager secret ")
        assert "'fleet/absent'" in failed.error and "not found" in failed.error
        # Health: prod-eu is down, and the reason is the secret.
        monitor = _monitor(running)
        await _down(monitor, "prod-eu")
        probe = monitor.last_probe("prod-eu")
        assert probe is not None and not probe.ok and "'fleet/absent'" in probe.error
        # Never anonymous: prod-eu was sent no request at all, by the copier or the prober.
        assert _requests_logged(fleet, "prod-eu") == before
        # The sidecar keeps serving.
        again = await running.stub.Decide(
            pb.DecideRequest(image=pb.Image(registry="ci", repository="web/app", tag="prod-1.0")),
            timeout=10,
        )
        assert again.decision_id


async def test_secret_values_never_leak_and_a_fixed_secret_is_picked_up(
    fleet: Fleet, moto: MotoServer, tmp_path: Path
) -> None:
    password = fleet.servers["prod-eu"].password
    user = fleet.servers["prod-eu"].username
    # Malformed (cut short) but holding the real password: the errors must not quote it.
    _put(moto, SECRET, json.dumps({"username": user, "password": password})[:-1])
    first = await _push(fleet, "web/app", "prod-1.0", seed=2)
    config = _managed_config(fleet, moto, tmp_path / "state", SECRET)
    with CapturedLogs() as logs:
        async with running_sidecar(config) as running:
            answer = await _replicate(running, "web/app", "prod-1.0")
            jobs = await _settled(running, list(answer.job_ids))
            failed = jobs["prod-eu"]
            assert failed.state == "failed" and "is not valid JSON" in failed.error
            monitor = _monitor(running)
            await _down(monitor, "prod-eu")
            probe = monitor.last_probe("prod-eu")
            explained = await running.stub.Explain(
                pb.ExplainRequest(decision_id=answer.decision.decision_id), timeout=10
            )
            listed = await running.stub.ListJobs(pb.ListJobsRequest(limit=100), timeout=10)
            # The operator fixes the secret: the sidecar reads it again without a restart.
            _put(moto, SECRET, json.dumps({"username": user, "password": password}))
            second = await _push(fleet, "web/app", "prod-1.1", seed=3)
            deadline = time.monotonic() + 60
            while True:
                answer2 = await _replicate(running, "web/app", "prod-1.1")
                fixed = await _settled(running, list(answer2.job_ids))
                if "prod-eu" in fixed:
                    break
                # prod-eu was down at decision time (deferred): wait for its recovery, retry.
                assert time.monotonic() < deadline, fixed
                await asyncio.sleep(0.5)
            assert fixed["prod-eu"].state == "succeeded", fixed["prod-eu"].error
    assert probe is not None and "is not valid JSON" in probe.error
    leaks = {
        "job error": failed.error,
        "health": probe.error,
        "Explain": str(explained),
        "ListJobs": str(listed),
        "logs": "\n".join(logs.lines),
    }
    for where, text in leaks.items():
        assert password not in text, f"the secret's value leaked into {where}"
    assert any("registry_secret_unusable" in line for line in logs.lines)
    assert first and second


@pytest.fixture
async def foreign_realm() -> AsyncIterator[tuple[str, list[dict[str, str]]]]:
    """A token service on another origin, over plain http, recording what reaches it."""
    seen: list[dict[str, str]] = []

    async def token(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"token": "t", "expires_in": 300})

    app = web.Application()
    app.router.add_get("/token", token)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/token", seen
    finally:
        await runner.cleanup()


@pytest.fixture
async def luring_registry(
    foreign_realm: tuple[str, list[dict[str, str]]],
) -> AsyncIterator[tuple[str, list[str]]]:
    """A registry that answers every request 401 with a Bearer realm on another origin."""
    realm, _ = foreign_realm
    authorizations: list[str] = []

    async def v2(request: web.Request) -> web.Response:
        authorizations.append(request.headers.get("Authorization", ""))
        return web.Response(
            status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="lure"'}
        )

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", v2)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", authorizations
    finally:
        await runner.cleanup()


async def test_secret_credentials_never_reach_another_origin(
    moto: MotoServer,
    tmp_path: Path,
    foreign_realm: tuple[str, list[dict[str, str]]],
    luring_registry: tuple[str, list[str]],
) -> None:
    url, authorizations = luring_registry
    _, realm_seen = foreign_realm
    _put(moto, "lure/creds", json.dumps({"username": "bot", "password": "lure-pw-123"}))
    doc = {
        "secrets": {"awsSecretRegion": moto.region, "awsEndpointUrl": moto.endpoint_url},
        "registries": [
            {
                "name": "lure",
                "endpoint": url,
                "auth": {"use_secrets_manager": True, "secret_name": "lure/creds"},
                "metadata": {"environment": "prod"},
            }
        ],
        "policy": {"health": HEALTH},
    }
    path = tmp_path / "lure.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    config = isolated_config(load_config(path), tmp_path / "state")
    async with running_sidecar(config) as running:
        monitor = _monitor(running)
        deadline = time.monotonic() + 60
        while (probe := monitor.last_probe("lure")) is None or probe.ok:
            assert time.monotonic() < deadline, "no failed probe of the luring registry"
            await asyncio.sleep(0.1)
        assert probe is not None and "not sent to a plain-http token realm" in probe.error
        assert "lure-pw-123" not in probe.error
        # The foreign realm never saw the credentials (nor was it asked at all).
        assert realm_seen == []
        # The registry's own origin did get them (Basic, before it asked for Bearer).
        assert any(a.startswith("Basic ") for a in authorizations)
        listed = await running.stub.ListJobs(pb.ListJobsRequest(limit=10), timeout=10)
        assert list(listed.jobs) == []

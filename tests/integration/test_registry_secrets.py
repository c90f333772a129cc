"""Issue 15 item 8: copies to a registry whose credentials live in a secret manager.

Real pieces only: a CNCF ``docker-registry`` behind htpasswd auth, moto's AWS Secrets Manager, and a
local gRPC server speaking GCP's published ``SecretManagerService`` (tests/support/gcp_secrets.py)
that the real google-cloud-secret-manager client talks to. Before, a registry configured with
``use_secrets_manager`` went anonymous and every push was refused.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import yaml
from aiohttp import web

from sidecar.config import Config, SecretRef, SecretsSettings, load_config
from sidecar.errors import RegistryError, SecretUnusable
from sidecar.model.jobs import JobSpec
from sidecar.oci import RegistryClients
from sidecar.oci._auth import basic_header
from sidecar.replicate.copy import ImageCopier
from sidecar.secrets import (
    FAILURE_TTL_S,
    MIN_REFRESH_S,
    AwsSecretsManager,
    ReadFailed,
    RegistrySecrets,
    SecretCache,
)
from tests.support.fake_registry import fake_server
from tests.support.gcp_secrets import GcpSecretServer, gcp_secret_server
from tests.support.images import push_image, registry_config
from tests.support.moto import MotoServer, moto_server
from tests.support.registry import RegistryServer, registry_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

PROJECT = "secrets-test"
USER = "replicator"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """One moto server, its fake credentials in the environment (boto3's default chain)."""
    with moto_server(tmp_path_factory.mktemp("moto")) as server, pytest.MonkeyPatch.context() as mp:
        for key, value in server.env().items():
            mp.setenv(key, value)
        yield server


@pytest.fixture(scope="module")
def gcp() -> Iterator[GcpSecretServer]:
    """The local GCP Secret Manager."""
    with gcp_secret_server() as server:
        yield server


class Manager:
    """One secret manager the test can write to, as the operator would."""

    def __init__(self, kind: str, moto: MotoServer, gcp: GcpSecretServer | None) -> None:
        self.kind, self._moto, self._gcp = kind, moto, gcp
        self._sm = boto3.client(
            "secretsmanager", endpoint_url=moto.endpoint_url, region_name=moto.region
        )

    def put(self, name: str, value: str) -> None:
        """Create the secret, or add a new current version of it (a rotation)."""
        if self._gcp is not None and self.kind == "gcp":
            self._gcp.add_version(PROJECT, name, value)
            return
        try:
            self._sm.put_secret_value(SecretId=name, SecretString=value)
        except self._sm.exceptions.ResourceNotFoundException:
            self._sm.create_secret(Name=name, SecretString=value)

    def section(self) -> dict[str, object]:
        """The ``secrets:`` section pointing at this manager."""
        return {
            "secretsManagerType": self.kind,
            "awsSecretRegion": self._moto.region,
            "awsEndpointUrl": self._moto.endpoint_url,
            "gcpSecretProject": PROJECT,
            "gcpEndpoint": self._gcp.endpoint if self._gcp else "",
            "gcpInsecure": True,
        }


@dataclass
class World:
    """A source registry (anonymous), a destination behind htpasswd, and a secret manager."""

    src: RegistryServer
    dst: RegistryServer
    manager: Manager
    tmp: Path

    def config(self, secret: str) -> Config:
        doc = {
            "secrets": self.manager.section(),
            "registries": [
                {"name": "src", "endpoint": self.src.url},
                {
                    "name": "dst",
                    "endpoint": self.dst.url,
                    "auth": {"type": "basic", "use_secrets_manager": True, "secret_name": secret},
                },
            ],
        }
        path = self.tmp / f"{secret}.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        return load_config(path)


@pytest.fixture(params=["aws", "gcp"])
def world(
    request: pytest.FixtureRequest, tmp_path: Path, moto: MotoServer, gcp: GcpSecretServer
) -> Iterator[World]:
    with (
        registry_server(tmp_path / "src") as src,
        registry_server(tmp_path / "dst", username=USER, password="first-pw") as dst,
    ):
        yield World(src, dst, Manager(request.param, moto, gcp), tmp_path)


@contextlib.asynccontextmanager
async def copier(
    config: Config,
) -> AsyncIterator[tuple[ImageCopier, RegistrySecrets, RegistryClients]]:
    secrets = RegistrySecrets(config.registries, config.secrets)
    clients = RegistryClients(config.registries, credentials=secrets.credentials)
    try:
        yield ImageCopier(clients, blob_concurrency=3), secrets, clients
    finally:
        await clients.close()
        secrets.close()


def _spec(digest: str, repo: str = "team/app") -> JobSpec:
    return JobSpec(
        source_registry="src",
        source_repository=repo,
        digest=digest,
        destination_registry="dst",
        destination_repository=repo,
        tag="v1",
    )


async def _in_dst(world: World, repo: str, digest: str, password: str) -> bool:
    """Read the destination with the registry's own (static) credentials."""
    check = RegistryClients(
        [registry_config("dst", world.dst.url, username=USER, password=password)]
    )
    try:
        return await check.get("dst").head_manifest(repo, digest) is not None
    finally:
        await check.close()


async def _push(world: World, repo: str, seed: int) -> str:
    clients = RegistryClients([registry_config("src", world.src.url)])
    try:
        return (await push_image(clients.get("src"), repo, tag="v1", seed=seed)).digest
    finally:
        await clients.close()


@pytest.mark.parametrize(
    "payload",
    [
        json.dumps({"username": USER, "password": "first-pw"}),
        "docker-config",
    ],
    ids=["json", "docker-config"],
)
async def test_copy_uses_the_credentials_of_the_secret(world: World, payload: str) -> None:
    if payload == "docker-config":
        auth = base64.b64encode(f"{USER}:first-pw".encode()).decode()
        payload = json.dumps({"auths": {world.dst.host: {"auth": auth}}})
    world.manager.put("dst-creds", payload)
    digest = await _push(world, "team/app", seed=1)
    other = await _push(world, "team/other", seed=2)
    async with copier(world.config("dst-creds")) as (copy, secrets, _):
        await copy.copy(_spec(digest))
        await copy.copy(_spec(other, "team/other"))
        # Both copies (dozens of requests) read the secret once: it is cached for the TTL.
        assert secrets.cache.reads == 1
    assert await _in_dst(world, "team/app", digest, "first-pw")
    assert await _in_dst(world, "team/other", other, "first-pw")


async def test_a_rotated_secret_is_read_again_on_the_registrys_401(world: World) -> None:
    world.manager.put("rotating", json.dumps({"username": USER, "password": "first-pw"}))
    first = await _push(world, "team/app", seed=3)
    second = await _push(world, "team/next", seed=4)
    async with copier(world.config("rotating")) as (copy, secrets, _):
        await copy.copy(_spec(first))
        assert secrets.cache.reads == 1
        # Rotation: the registry takes only the new password, the secret holds it.
        port = int(world.dst.host.rpartition(":")[2])
        world.dst.stop()
        with registry_server(world.dst.root, username=USER, password="second-pw", port=port):
            world.manager.put("rotating", json.dumps({"username": USER, "password": "second-pw"}))
            await asyncio.sleep(MIN_REFRESH_S)  # a value just read is not dropped on a 401
            await copy.copy(_spec(second, "team/next"))
            # One refresh, on the first 401: not one per request.
            assert secrets.cache.reads == 2
            assert await _in_dst(world, "team/next", second, "second-pw")


async def test_a_wrong_secret_is_read_again_once_then_the_copy_fails(world: World) -> None:
    world.manager.put("wrong", json.dumps({"username": USER, "password": "not-it"}))
    digest = await _push(world, "team/app", seed=5)
    async with copier(world.config("wrong")) as (copy, secrets, _):
        with pytest.raises(RegistryError) as caught:
            await copy.copy(_spec(digest))
        assert caught.value.status == 401 and "registry dst" in str(caught.value)
        # Read just now: a registry refusing it does not start a loop of reads.
        assert secrets.cache.reads == 1
        await asyncio.sleep(MIN_REFRESH_S)
        with pytest.raises(RegistryError):
            await copy.copy(_spec(digest))
        # Older than a moment: that copy's first 401 read it again, once.
        assert secrets.cache.reads == 2


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("missing", "not found"),
        ("malformed", "is not valid JSON"),
        ("no-user", "no auth.username"),
    ],
)
async def test_an_unusable_secret_fails_the_copy_without_a_request(
    world: World, case: str, problem: str
) -> None:
    name = f"unusable-{case}"
    if case == "malformed":
        world.manager.put(name, '{"username": "replicator", "password": "first-pw"')
    elif case == "no-user":
        world.manager.put(name, "first-pw")
    digest = await _push(world, "team/app", seed=6)
    async with copier(world.config(name)) as (copy, _, clients):
        with pytest.raises(SecretUnusable) as caught:
            await copy.copy(_spec(digest))
        message = str(caught.value)
        assert message.startswith("registry dst: auth: ")
        assert name in message and problem in message
        assert "first-pw" not in message
        # Never anonymous: the destination was not asked anything at all.
        assert clients.get("dst").requests == 0


async def test_a_token_service_refusing_a_rotated_secret_gets_the_new_one(
    moto: MotoServer, tmp_path: Path
) -> None:
    """Bearer registries: the token service's 401 is what says the secret rotated."""
    accepted = {"password": "old-pw", "token": "token-1"}

    async def registry(request: web.Request) -> web.StreamResponse:
        if request.path == "/token":
            if request.headers.get("Authorization") != basic_header(USER, accepted["password"]):
                return web.Response(status=401)
            return web.json_response({"token": accepted["token"], "expires_in": 300})
        if request.headers.get("Authorization") == f"Bearer {accepted['token']}":
            return web.Response(status=200)
        realm = f"{request.url.origin()}/token"
        return web.Response(
            status=401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"'}
        )

    manager = Manager("aws", moto, None)
    manager.put("bearer-creds", json.dumps({"username": USER, "password": "old-pw"}))
    async with fake_server(registry) as fake:
        doc = {
            "secrets": {"awsSecretRegion": moto.region, "awsEndpointUrl": moto.endpoint_url},
            "registries": [
                {
                    "name": "dst",
                    "endpoint": fake.url,
                    "auth": {"use_secrets_manager": True, "secret_name": "bearer-creds"},
                }
            ],
        }
        path = tmp_path / "bearer.yaml"
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        config = load_config(path)
        async with copier(config) as (_, secrets, clients):
            await clients.get("dst").ping()
            assert secrets.cache.reads == 1
            # Rotation: the old token is revoked, the token service takes only the new password.
            accepted.update(password="new-pw", token="token-2")
            manager.put("bearer-creds", json.dumps({"username": USER, "password": "new-pw"}))
            await asyncio.sleep(MIN_REFRESH_S)
            await clients.get("dst").ping()
            assert secrets.cache.reads == 2
    token_asks = [s.authorization for s in fake.seen if s.path.startswith("/token")]
    assert token_asks == [
        basic_header(USER, "old-pw"),
        basic_header(USER, "old-pw"),  # refused: the secret is read again …
        basic_header(USER, "new-pw"),  # … and the exchange tried once more
    ]


@pytest.mark.parametrize(
    ("case", "problem"),
    [
        ("denied", "access denied (PermissionDenied)"),
        ("disabled", "version is disabled or destroyed (FailedPrecondition)"),
    ],
)
async def test_gcp_refusals_name_the_secret_and_the_reason(
    tmp_path: Path, moto: MotoServer, gcp: GcpSecretServer, case: str, problem: str
) -> None:
    name = f"gcp-{case}"
    number = gcp.add_version(PROJECT, name, json.dumps({"username": USER, "password": "pw"}))
    if case == "denied":
        gcp.denied.add((PROJECT, name))
    else:
        gcp.disabled.add((PROJECT, name, number))
    with registry_server(tmp_path / "dst", username=USER, password="pw") as dst:
        world = World(dst, dst, Manager("gcp", moto, gcp), tmp_path)
        async with copier(world.config(name)) as (_, _, clients):
            with pytest.raises(SecretUnusable) as caught:
                await clients.get("dst").ping()
    assert str(caught.value) == (
        f"registry dst: auth: GCP Secret Manager secret "
        f"'projects/{PROJECT}/secrets/{name}/versions/latest': {problem}"
    )
    assert not caught.value.transient
    # The client asked without credentials of its own (the emulator is plaintext, anonymous).
    assert all("authorization" not in m for m in gcp.metadata)


async def test_a_secret_is_read_again_once_its_ttl_is_over(moto: MotoServer) -> None:
    Manager("aws", moto, None).put("ttl-creds", "v1")
    settings = SecretsSettings(
        aws_endpoint_url=moto.endpoint_url, aws_secret_region=moto.region, cache_ttl_s=60
    )
    now = [1000.0]
    reader = AwsSecretsManager(settings)
    cache = SecretCache({"aws": reader}, ttl_s=60, timeout_s=10, clock=lambda: now[0])
    ref = SecretRef("aws", "ttl-creds", moto.region)
    missing = SecretRef("aws", "ttl-absent", moto.region)
    try:
        assert await cache.read(ref) == b"v1"
        Manager("aws", moto, None).put("ttl-creds", "v2")
        now[0] += 59
        assert await cache.read(ref) == b"v1"  # within the TTL: the cached value
        now[0] += 2
        assert await cache.read(ref) == b"v2"  # past it: read again
        for _ in range(3):  # a missing secret is asked for once per failure TTL, not per call
            with pytest.raises(ReadFailed, match="not found"):
                await cache.read(missing)
        assert cache.reads == 3
        now[0] += FAILURE_TTL_S
        with pytest.raises(ReadFailed):
            await cache.read(missing)
        assert cache.reads == 4
    finally:
        reader.close()

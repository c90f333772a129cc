"""ECR authentication: a token from a real moto server logs in to a real registry."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from sidecar.config._registries import AuthConfig, RegistryConfig
from sidecar.errors import RegistryError
from sidecar.model.decision import RegistryFacts
from sidecar.oci import RegistryClient
from tests.support.images import push_image
from tests.support.moto import moto_server
from tests.support.registry import registry_server

pytestmark = pytest.mark.integration

ACCOUNT = "123456789012"


def _ecr(endpoint: str, moto_url: str, account: str = ACCOUNT) -> RegistryConfig:
    return RegistryConfig(
        name="ecr-test",
        facts=RegistryFacts("ecr-test", "us-east-1", "prod"),
        type="ecr",
        endpoint=endpoint,
        region="us-east-1",
        account_id=account,
        auth=AuthConfig(type="aws"),
        metadata=MappingProxyType({"ecr_endpoint_url": moto_url}),
    )


async def test_ecr_token_from_moto_authenticates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with moto_server(tmp_path / "moto") as moto:
        for key, value in moto.env().items():
            monkeypatch.setenv(key, value)
        # moto's ECR hands out the password "<account>-auth-token" for user AWS.
        with registry_server(
            tmp_path / "reg", username="AWS", password=f"{ACCOUNT}-auth-token"
        ) as registry:
            client = RegistryClient(_ecr(registry.url, moto.endpoint_url))
            other = RegistryClient(_ecr(registry.url, moto.endpoint_url, account="999999999999"))
            try:
                image = await push_image(client, "ecr/app", tag="v1")
                assert (await client.get_manifest("ecr/app", "v1")).digest == image.digest
                with pytest.raises(RegistryError) as caught:
                    await other.get_manifest("ecr/app", "v1")
                assert caught.value.status == 401 and not caught.value.transient
            finally:
                await client.close()
                await other.close()

"""Sensitive data reaches an external OPA (``policy.opa.address``) and is put back when lost.

An external OPA can restart or be wiped without the sidecar knowing; the sidecar loads the data
at startup and its watcher loads it again whenever ``data.sensitive`` goes missing. Bundle
revisions activated by OPA's own polling never touch the data: no bundle owns that root.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import build_local_bundle, signing_keys
from sidecar.bundles._publish_sign import sign_bundle
from sidecar.config import Config, load_config
from sidecar.errors import BundleError
from sidecar.policy.managed import ManagedOpa
from sidecar.testing import CapturedLogs
from sidecar.tools import find_tool
from tests.support.bundle_stores import bundle_store, polling_opa, wait_for
from tests.support.opa import rewrite_bundle, running_opa
from tests.support.sensitive import DENIED, customer_request, sensitive_config
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = pytest.mark.integration

_POLLING = {"min_delay_s": 1, "max_delay_s": 2, "long_poll_timeout_s": 10}
# Later flags win: a ManagedOpa standing in for an external OPA without API authentication.
OPEN_API = ("--authentication=off", "--authorization=off")


def _external(config: Config, address: str) -> Config:
    """``config`` asking the OPA at ``address``, checking for lost data every 0.2 s."""
    policy = config.policy
    return dataclasses.replace(
        config,
        policy=dataclasses.replace(
            policy,
            opa=dataclasses.replace(policy.opa, address=address),
            sensitive_data=dataclasses.replace(policy.sensitive_data, check_interval_s=0.2),
        ),
    )


async def _has_data(url: str) -> bool:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v1/data/sensitive/customers/allowlist") as response,
    ):
        return "result" in await response.json()


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _applies_allowlist(sidecar: RunningSidecar) -> pb.DecideResponse:
    answer = await sidecar.stub.Decide(customer_request(DENIED), timeout=10)
    assert not answer.degraded
    denied = {d.registry: list(d.reasons) for d in answer.decision.denied}
    assert denied["prod-us"] == ["CUSTOMER_NOT_ALLOWED"]
    return answer


async def test_polling_opa_keeps_the_data_across_revisions_and_wipes(tmp_path: Path) -> None:
    config = load_config(sensitive_config(tmp_path / "work"))
    first = await asyncio.to_thread(
        build_local_bundle, config, output=tmp_path / "a.tar.gz", revision="rev-a"
    )
    second = await asyncio.to_thread(
        build_local_bundle, config, output=tmp_path / "b.tar.gz", revision="rev-b"
    )
    async with bundle_store("http", tmp_path / "store") as store:
        await store.publish(first.bundle)
        opa_config = store.opa_config(first.verification_key, **_POLLING)
        async with polling_opa(opa_config, tmp_path / "opa") as opa:
            await wait_for([opa], "rev-a")
            with CapturedLogs() as logs:
                async with running_sidecar(_external(config, opa.url)) as sidecar:
                    assert (await _applies_allowlist(sidecar)).bundle_revision == "rev-a"

                    await store.publish(second.bundle)
                    await wait_for([opa], "rev-b")
                    assert (await _applies_allowlist(sidecar)).bundle_revision == "rev-b"
                    assert await _has_data(opa.url)

                    # Someone wipes the data (as a restart would): it is loaded again.
                    async with (
                        aiohttp.ClientSession() as http,
                        http.delete(f"{opa.url}/v1/data/sensitive") as response,
                    ):
                        assert response.status == 204
                    await _until(lambda: _has_data(opa.url), "the data to be loaded again")
                    await _until(lambda: _ready(sidecar), "the sidecar to be ready again")
                    await _applies_allowlist(sidecar)
    assert logs.find("sensitive data missing from OPA; loading it again", opa_url=opa.url)
    assert len(logs.find("sensitive data loaded into OPA", opa_url=opa.url)) >= 2


async def _ready(sidecar: RunningSidecar) -> bool:
    runtime = sidecar.sidecar.runtime
    return runtime is not None and runtime.ready()


async def test_restarted_external_opa_gets_the_data_again(tmp_path: Path) -> None:
    config = load_config(sensitive_config(tmp_path / "work"))
    local = await asyncio.to_thread(build_local_bundle, config, output=tmp_path / "b.tar.gz")
    # A supervised OPA of its own (restarts on the same port), unknown to the sidecar: its API
    # open, as an external OPA's may be (the sidecar holds no token for it).
    async with (
        running_opa(local.bundle.path, None, extra_args=OPEN_API) as external,
        running_sidecar(_external(config, external.url)) as sidecar,
    ):
        await _applies_allowlist(sidecar)
        pid = external.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await _until(lambda: _restarted(external, pid), "the external OPA to restart")
        await _until(lambda: _has_data(external.url), "the data to be loaded again")
        await _until(lambda: _ready(sidecar), "the sidecar to be ready again")
        await _applies_allowlist(sidecar)


async def _restarted(external: ManagedOpa, pid: int) -> bool:
    return external.ready and external.pid not in (None, pid)


async def test_external_opa_whose_bundle_claims_the_root_stops_the_startup(
    tmp_path: Path,
) -> None:
    config = load_config(sensitive_config(tmp_path / "work"))
    local = await asyncio.to_thread(build_local_bundle, config, output=tmp_path / "b.tar.gz")

    def claim_everything(files: dict[str, bytes]) -> None:
        manifest = json.loads(files[".manifest"])
        del manifest["roots"]  # no roots: the bundle owns all of data
        files[".manifest"] = json.dumps(manifest).encode()

    greedy = await asyncio.to_thread(
        sign_bundle,
        rewrite_bundle(local.bundle.path, tmp_path / "greedy-unsigned.tar.gz", claim_everything),
        tmp_path / "greedy.tar.gz",
        signing_key=signing_keys(config)[0],
        opa_binary=find_tool("opa"),
    )
    # Plain `opa run` polling the file: a managed OPA would not even start on a roots-less bundle
    # (it overlaps the root of the managed OPA's API policy).
    opa_config = {
        "bundles": {
            "replication": {
                "resource": f"file://{greedy.path}",
                "signing": {"keyid": "k"},
            }
        },
        "keys": {"k": {"algorithm": "RS256", "key": local.verification_key.read_text()}},
    }
    async with polling_opa(opa_config, tmp_path / "greedy-opa") as external:
        await wait_for([external], greedy.revision)
        with pytest.raises(BundleError) as err:
            async with running_sidecar(_external(config, external.url)):
                pass
    assert "refused data.sensitive" in err.value.message
    assert "no bundle may own the root 'sensitive'" in err.value.message

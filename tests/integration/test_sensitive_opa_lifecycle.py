"""The managed OPA gets the sensitive data on every launch: restart, new revision, refused reload.

OPA keeps Data API writes in memory only; these tests kill it and swap its bundle, and check that
no decision is ever made without the allowlist, and that a bundle claiming the ``sensitive`` root
is refused while the previous one keeps serving with the data.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from sidecar._proto import policy_pb2 as pb
from sidecar.app.bundle import build_local_bundle, signing_keys
from sidecar.bundles._publish_sign import sign_bundle
from sidecar.config import load_config
from sidecar.errors import BundleError
from sidecar.policy.managed import ManagedOpa
from sidecar.sensitive.runtime import SensitiveRuntime
from sidecar.tools import find_tool
from tests.support.opa import rewrite_bundle
from tests.support.sensitive import DENIED, customer_request, sensitive_config
from tests.support.sidecar import RunningSidecar, running_sidecar

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def sidecar(tmp_path: Path) -> AsyncIterator[RunningSidecar]:
    config = load_config(sensitive_config(tmp_path / "work"))
    async with running_sidecar(config) as running:
        yield running


def _parts(sidecar: RunningSidecar) -> tuple[ManagedOpa, SensitiveRuntime]:
    runtime = sidecar.sidecar.runtime
    assert runtime is not None and runtime.managed is not None and runtime.sensitive is not None
    return runtime.managed, runtime.sensitive


async def _decide_denied(sidecar: RunningSidecar) -> pb.DecideResponse:
    """Decide for a customer not on the allowlist; a real answer must apply the allowlist."""
    answer = await sidecar.stub.Decide(customer_request(DENIED), timeout=10)
    denied = {d.registry: list(d.reasons) for d in answer.decision.denied}
    if answer.degraded:
        assert not answer.decision.allow, "closed fail mode must deny"
    else:
        assert denied["prod-us"] == ["CUSTOMER_NOT_ALLOWED"], "decided without the allowlist"
    return answer


async def test_killed_opa_gets_the_data_before_it_decides_again(sidecar: RunningSidecar) -> None:
    managed, sensitive = _parts(sidecar)
    pid = managed.pid
    assert pid is not None and sensitive.loader.loaded
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    answers = []
    while True:
        # Ask continuously through the restart: every answer is degraded or applies the list.
        answers.append(await _decide_denied(sidecar))
        if managed.restarts >= 1 and not answers[-1].degraded:
            break
        assert time.monotonic() < deadline, "managed OPA did not come back"
        await asyncio.sleep(0.005)
    assert managed.pid not in (None, pid)
    assert await sensitive.loader.present(managed.url)


async def test_new_revision_keeps_the_data(sidecar: RunningSidecar, tmp_path: Path) -> None:
    managed, sensitive = _parts(sidecar)
    config = sidecar.sidecar.config
    await asyncio.to_thread(
        build_local_bundle, config, output=tmp_path / "next.tar.gz", revision="rev-next"
    )
    await managed.reload(tmp_path / "next.tar.gz")
    answer = await _decide_denied(sidecar)
    assert (answer.bundle_revision, answer.degraded) == ("rev-next", False)
    assert sensitive.loader.loaded and await sensitive.loader.present(managed.url)


async def test_bundle_claiming_the_sensitive_root_is_refused_and_nothing_changes(
    sidecar: RunningSidecar, tmp_path: Path
) -> None:
    managed, sensitive = _parts(sidecar)
    config = sidecar.sidecar.config
    before = await _decide_denied(sidecar)
    serving = managed.bundle_path

    def claim(files: dict[str, bytes]) -> None:
        manifest = json.loads(files[".manifest"])
        manifest["roots"] = [*manifest["roots"], "sensitive"]
        manifest["revision"] = "rev-greedy"
        files[".manifest"] = json.dumps(manifest).encode()

    unsigned = rewrite_bundle(serving, tmp_path / "greedy-unsigned.tar.gz", claim)
    greedy = await asyncio.to_thread(
        sign_bundle,
        unsigned,
        tmp_path / "greedy.tar.gz",
        signing_key=signing_keys(config)[0],
        opa_binary=find_tool("opa"),
    )
    with pytest.raises(BundleError) as err:
        await managed.reload(greedy.path)
    assert "still serving" in err.value.message
    assert "owned by bundle" in err.value.message and "'sensitive'" in err.value.message
    assert managed.bundle_path == serving and managed.ready
    after = await _decide_denied(sidecar)
    assert (after.bundle_revision, after.degraded) == (before.bundle_revision, False)
    assert sensitive.loader.loaded and await sensitive.loader.present(managed.url)

"""Freightliner's side: the Go client in clients/go calls a real sidecar (`go test`, run from here).

The fleet of real CNCF Distribution registries (tests/support/fleet.py), a real
``policy-sidecar serve`` process with its managed OPA, one scanned prod image pushed to ``ci``;
then ``go test`` in clients/go calls ``Decide``, ``Replicate`` and ``WatchJob`` and reads the rich
error details (ErrorInfo, BadRequest) with ``status.FromError(err).Details()``. Afterwards the
registries are checked by digest: the copies the Go client watched really landed.

Go is required: without it this test fails (scripts/install-system.sh does not install Go; the
README lists it as a prerequisite). Go's build and module caches stay in their defaults, outside
the checkout (``go env GOCACHE GOMODCACHE``); ``-mod=readonly`` keeps go.mod/go.sum untouched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.config import load_config
from sidecar.oci import RegistryClients
from tests.support.fleet import Fleet, registry_fleet
from tests.support.images import push_image, push_manifest, scanned_labels

ROOT = Path(__file__).resolve().parents[2]
GO_CLIENT = ROOT / "clients" / "go"
ROUTES = ("prod-eu", "prod-us")

# clock: the image's scan is an hour old by the wall clock; the first `go test` compiles gRPC.
pytestmark = [pytest.mark.timeout(600), pytest.mark.clock]


def _go() -> str:
    go = shutil.which("go")
    assert go, "the Go client test needs the `go` toolchain on PATH (README: prerequisites)"
    return go


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The five registries and a sidecar config for them."""
    with registry_fleet(tmp_path, replication={"workers": 2}) as running:
        yield running


@pytest.fixture
async def clients(fleet: Fleet) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry of the fleet."""
    pool = RegistryClients(load_config(fleet.config_path).registries)
    try:
        yield pool
    finally:
        await pool.close()


def _serve(fleet: Fleet, log: Path) -> subprocess.Popen[bytes]:
    """Start ``policy-sidecar serve`` for the fleet's config, logging to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "sidecar", "--config", str(fleet.config_path), "serve"],
            stdout=out,
            stderr=out,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


@pytest.fixture
async def serving(fleet: Fleet, tmp_path: Path) -> AsyncIterator[str]:
    """A real ``policy-sidecar serve`` process on the fleet's config; yields its gRPC address."""
    log = tmp_path / "sidecar.log"
    proc = _serve(fleet, log)
    try:
        async with grpc.aio.insecure_channel(fleet.grpc_address) as channel:
            stub = pb_grpc.PolicyServiceStub(channel)
            deadline = time.monotonic() + 120
            while True:
                try:
                    await stub.ListJobs(pb.ListJobsRequest(limit=1), timeout=5)
                    break
                except grpc.aio.AioRpcError:
                    assert proc.poll() is None, log.read_text(encoding="utf-8")[-4000:]
                    assert time.monotonic() < deadline, "the sidecar did not start serving"
                    await asyncio.sleep(0.2)
        yield fleet.grpc_address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_go_client_decides_replicates_and_watches_against_the_real_sidecar(
    fleet: Fleet, clients: RegistryClients, serving: str
) -> None:
    go = _go()
    ci = clients.get("ci")
    image = await push_image(ci, "web/goclient", seed=71, labels=scanned_labels())
    manifest = (await ci.get_manifest("web/goclient", image.digest)).json
    await push_manifest(ci, "web/goclient", manifest, "prod-2.0")

    env = {
        **os.environ,
        "POLICY_SIDECAR_ADDR": serving,
        "POLICY_SIDECAR_TEST_IMAGE": "ci/web/goclient:prod-2.0",
        "POLICY_SIDECAR_TEST_DIGEST": image.digest,
        "POLICY_SIDECAR_TEST_ROUTES": ",".join(ROUTES),
        "GOFLAGS": "-mod=readonly",
    }
    proc = await asyncio.create_subprocess_exec(
        go, "test", "-count=1", "-v", "./...",
        cwd=GO_CLIENT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=540)
    text = out.decode(errors="replace")
    print(text)  # the Go tests' own -v log, shown by pytest -rP or on failure
    assert proc.returncode == 0, text
    for name in (
        "TestDecide",
        "TestReplicateThenWatchJobToTheEnd",
        "TestErrorsCarryErrorInfoAndFieldViolations",
    ):
        assert f"--- PASS: {name} " in text, text

    # What the Go client watched finish is really there, by digest.
    for name in ROUTES:
        found = await clients.get(name).head_manifest("web/goclient", image.digest)
        assert found is not None, f"{name} does not hold web/goclient@{image.digest}"

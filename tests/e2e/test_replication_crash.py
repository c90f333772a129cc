"""A sidecar killed with SIGKILL in the middle of copies loses no job and repeats none.

The sidecar runs as a real ``policy-sidecar serve`` process over the fleet of
tests/support/fleet.py; reads from ``ci`` are rate-limited so copies are still running when
the process is killed. The restarted process takes over the expired leases and finishes.
"""

from __future__ import annotations

import asyncio
import os
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
from tests.support.images import push_image, push_manifest

pytestmark = pytest.mark.timeout(300)

_IMAGES = 3
_LAYERS = 12


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """Registries whose source is slow to read (8 requests/s) and a 2 s job lease."""
    replication = {"lease_s": 2, "registry_rate_limit_rps": {"ci": 8}, "workers": 2}
    with registry_fleet(tmp_path, replication=replication) as running:
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


async def _jobs(stub: pb_grpc.PolicyServiceStub, deadline: float) -> list[pb.Job]:
    """ListJobs, waiting for the server to come up (until ``deadline``)."""
    while True:
        try:
            return list((await stub.ListJobs(pb.ListJobsRequest(limit=500), timeout=5)).jobs)
        except grpc.aio.AioRpcError:
            assert time.monotonic() < deadline, "sidecar did not answer ListJobs"
            await asyncio.sleep(0.2)


async def test_sigkill_mid_copy_then_restart_finishes_every_job_once(
    fleet: Fleet, clients: RegistryClients, tmp_path: Path
) -> None:
    log = tmp_path / "sidecar.log"
    proc = _serve(fleet, log)
    try:
        async with grpc.aio.insecure_channel(fleet.grpc_address) as channel:
            stub = pb_grpc.PolicyServiceStub(channel)
            await _jobs(stub, time.monotonic() + 120)  # up and serving
            ci = clients.get("ci")
            digests = []
            for n in range(_IMAGES):
                image = await push_image(
                    ci, f"big/app{n}", seed=50 + n, layer_sizes=[256 << 10] * _LAYERS
                )
                digests.append(image.digest)
                # A sandbox tag: one destination each, pushed last so the webhook sees it whole.
                doc = (await ci.get_manifest(f"big/app{n}", image.digest)).json
                await push_manifest(ci, f"big/app{n}", doc, "nightly")
            deadline = time.monotonic() + 120
            while True:
                jobs = await _jobs(stub, deadline)
                if any(j.state == "running" and j.blobs_done > 0 for j in jobs):
                    break
                finished = [j for j in jobs if j.state == "succeeded"]
                assert len(finished) < _IMAGES, "every copy finished before the kill"
                assert time.monotonic() < deadline, f"no copy started: {jobs}"
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        interrupted = {j.job_id for j in jobs if j.state == "running"}

        proc = _serve(fleet, log)
        async with grpc.aio.insecure_channel(fleet.grpc_address) as channel:
            stub = pb_grpc.PolicyServiceStub(channel)
            deadline = time.monotonic() + 180
            while True:
                jobs = await _jobs(stub, deadline)
                if len(jobs) == _IMAGES and all(j.state == "succeeded" for j in jobs):
                    break
                assert time.monotonic() < deadline, [(j.state, j.error) for j in jobs]
                await asyncio.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    # One job per (digest, destination): nothing was lost, nothing was queued twice.
    assert sorted(j.destination for j in jobs) == [
        f"sandbox/big/app{n}:nightly" for n in range(_IMAGES)
    ]
    assert sorted(j.digest for j in jobs) == sorted(digests)
    # The interrupted copies ran again (a second attempt) after the restart took their lease.
    assert interrupted and all(j.attempts >= 2 for j in jobs if j.job_id in interrupted)
    sandbox = clients.get("sandbox")
    for n, digest in enumerate(digests):
        tagged = await sandbox.head_manifest(f"big/app{n}", "nightly")
        assert tagged is not None and tagged.digest == digest

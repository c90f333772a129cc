"""Bundle stores (moto S3, fake-gcs-server, the built-in BundleServer) and OPAs polling them.

Shared by tests/integration/test_bundle_propagation.py and tests/bench/propagation.py: each store
yields the ``--to`` URL to publish to and renders the OPA config that polls it; ``polling_opa``
runs a real ``opa run --server`` with that config.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import boto3
import yaml

from sidecar.bundles.build import BuiltBundle
from sidecar.bundles.opa_config import opa_config
from sidecar.bundles.publish import PublishResult, publisher_for
from sidecar.bundles.server import BundleServer
from sidecar.tools import find_tool
from tests.support.gcs import fake_gcs_server
from tests.support.moto import moto_server
from tests.support.ports import free_port

__all__ = ["STORE_KINDS", "BundleStore", "PollingOpa", "bundle_store", "polling_opa", "wait_for"]

STORE_KINDS = ("s3", "gcs", "http")
_TOKEN = "publish-token-for-tests"


@dataclass(frozen=True)
class BundleStore:
    """A running store: where to publish, and how an OPA reaches it."""

    kind: str
    target: str
    endpoint: str | None
    token: str | None
    opa_env: Mapping[str, str] = field(default_factory=dict)
    server: BundleServer | None = None

    async def publish(self, bundle: BuiltBundle) -> PublishResult:
        """Publish through the production publisher (in a thread: the HTTP store shares our loop)."""
        publisher = publisher_for(self.target, token=self.token, endpoint_url=self.endpoint)
        return await asyncio.to_thread(publisher.publish, bundle)

    def opa_config(self, verification_key: Path, **polling: Any) -> dict[str, Any]:
        """Render the OPA config for this store (no GCP credentials against the emulator)."""
        return opa_config(
            self.target,
            verification_key_pem=verification_key.read_text(),
            endpoint_url=self.endpoint,
            token=self.token,
            gcs_credentials=None,
            **polling,
        )


@contextlib.asynccontextmanager
async def bundle_store(kind: str, work: Path) -> AsyncIterator[BundleStore]:
    """Start store ``kind`` (s3|gcs|http) with an empty bucket; stop it afterwards."""
    if kind == "s3":
        with moto_server(work / "logs") as moto:
            env = moto.env()
            s3 = boto3.client(
                "s3",
                endpoint_url=moto.endpoint_url,
                region_name=moto.region,
                aws_access_key_id=moto.access_key_id,
                aws_secret_access_key=moto.secret_access_key,
            )
            s3.create_bucket(Bucket="policy-bundles")
            saved = {k: os.environ.get(k) for k in env}
            os.environ.update(env)  # boto3 in the publisher reads the same fake credentials
            try:
                yield BundleStore(
                    "s3", "s3://policy-bundles/opa/replication.tar.gz", moto.endpoint_url, None, env
                )
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value
    elif kind == "gcs":
        with fake_gcs_server(work / "logs") as gcs:
            gcs.create_bucket("policy-bundles")
            yield BundleStore(
                "gcs", "gs://policy-bundles/opa/replication.tar.gz", gcs.endpoint, None
            )
    elif kind == "http":
        server = BundleServer(work / "bundle-server", token=_TOKEN)
        await server.start()
        try:
            yield BundleStore(
                "http", f"{server.url}/bundles/replication", None, _TOKEN, server=server
            )
        finally:
            await server.stop()
    else:
        raise ValueError(f"unknown store kind {kind!r}")


@dataclass(frozen=True)
class PollingOpa:
    """A running OPA polling a bundle service: its URL and log file."""

    url: str
    log: Path

    async def served(self, session: aiohttp.ClientSession) -> tuple[str, Any]:
        """Return (active bundle revision or "", data.replication.settings.mode)."""
        async with session.get(
            f"{self.url}/v1/data/replication/settings/mode?provenance=true"
        ) as response:
            body = await response.json()
        bundles = body.get("provenance", {}).get("bundles", {})
        return str(bundles.get("replication", {}).get("revision", "")), body.get("result")

    def log_text(self) -> str:
        """Return what OPA has logged so far."""
        return self.log.read_text(errors="replace")


def _spawn_opa(
    config: Mapping[str, Any], work: Path, env: Mapping[str, str] | None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """Write the config and start OPA on a free port; return (process, port, log path)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "opa.yaml").write_text(yaml.safe_dump(dict(config)))
    port = free_port()
    args = [str(find_tool("opa")), "run", "--server", "--addr", f"127.0.0.1:{port}",
            "--config-file", str(work / "opa.yaml"), "--skip-version-check",
            "--log-level", "error", "--log-format", "text"]  # fmt: skip
    setpriv = shutil.which("setpriv")
    if setpriv:
        args = [setpriv, "--pdeathsig", "KILL", "--", *args]  # no orphan if pytest is killed
    log_path = work / "opa.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=work, env={**os.environ, **(env or {})}
        )
    return proc, port, log_path


@contextlib.asynccontextmanager
async def polling_opa(
    config: Mapping[str, Any], work: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[PollingOpa]:
    """Run ``opa run --server`` with ``config`` until the block exits (killed even on failure)."""
    proc, port, log_path = await asyncio.to_thread(_spawn_opa, config, work, env)
    opa = PollingOpa(f"http://127.0.0.1:{port}", log_path)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"opa exited {proc.returncode}:\n{opa.log_text()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{opa.url}/health") as response:
                        if response.status == 200:
                            break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"opa not up within 20 s:\n{opa.log_text()[-3000:]}")
                await asyncio.sleep(0.05)
        yield opa
    finally:
        proc.terminate()
        try:
            await asyncio.to_thread(proc.wait, 10)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


async def wait_for(
    opas: Sequence[PollingOpa],
    revision: str,
    *,
    since: float | None = None,
    timeout_s: float = 30.0,
    interval_s: float = 0.02,
) -> float:
    """Return seconds from ``since`` (monotonic; default now) until every OPA serves ``revision``.

    Raises TimeoutError naming what each OPA serves instead.
    """
    start = time.monotonic() if since is None else since
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while True:
            served = [await opa.served(session) for opa in opas]
            if all(rev == revision for rev, _ in served):
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise TimeoutError(f"not all OPAs serve {revision!r} after {timeout_s}s: {served}")
            await asyncio.sleep(interval_s)

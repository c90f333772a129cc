"""A real moto server (AWS S3, ECR, KMS emulation) on a loopback port, for boto3 clients in tests."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port

__all__ = ["MotoServer", "moto_server"]


@dataclass(frozen=True)
class MotoServer:
    """A running moto server: its endpoint URL plus the fake credentials and region to use."""

    endpoint_url: str
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"

    def env(self) -> dict[str, str]:
        """Return environment variables pointing AWS SDKs (and OPA) at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }


@contextlib.contextmanager
def moto_server(log_dir: Path) -> Iterator[MotoServer]:
    """Run ``moto_server`` from the project's virtualenv until the block exits."""
    binary = Path(sys.executable).with_name("moto_server")
    if not binary.exists():
        raise RuntimeError(
            f"{binary} missing: run scripts/setup.sh (moto[server] is a dev dependency)"
        )
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "moto.log").open("ab")
    env = {**os.environ, "MOTO_ALLOW_NONEXISTENT_REGION": "true"}
    proc = subprocess.Popen(
        [str(binary), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log, env=env
    )
    server = MotoServer(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {proc.returncode}; see {log_dir}")
            try:
                with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=1):  # noqa: S310
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server not ready within 30 s") from None
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

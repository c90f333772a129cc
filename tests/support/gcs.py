"""A real fake-gcs-server (Google Cloud Storage JSON API emulator) on a loopback port."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sidecar.tools import find_tool
from tests.support.ports import free_port

__all__ = ["FakeGcsServer", "fake_gcs_server"]


@dataclass(frozen=True)
class FakeGcsServer:
    """A running fake-gcs-server: its endpoint (``STORAGE_EMULATOR_HOST``)."""

    endpoint: str

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` through the JSON API."""
        request = urllib.request.Request(  # noqa: S310 - loopback URL built by this module
            f"{self.endpoint}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass

    def download(self, bucket: str, name: str) -> bytes:
        """Return an object's bytes, as OPA fetches them (``?alt=media``)."""
        url = f"{self.endpoint}/storage/v1/b/{bucket}/o/{urllib.request.quote(name, safe='')}"
        with urllib.request.urlopen(f"{url}?alt=media", timeout=10) as response:  # noqa: S310
            return bytes(response.read())


@contextlib.contextmanager
def fake_gcs_server(log_dir: Path) -> Iterator[FakeGcsServer]:
    """Run the pinned ``fake-gcs-server`` (memory backend) until the block exits."""
    binary = find_tool("fake-gcs-server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "fake-gcs.log").open("ab")
    proc = subprocess.Popen(
        [
            str(binary),
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-backend",
            "memory",
            "-external-url",
            endpoint,
            "-log-level",
            "warn",
        ],
        stdout=log,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"fake-gcs-server exited with {proc.returncode}; see {log_dir}")
            try:
                with urllib.request.urlopen(f"{endpoint}/storage/v1/b", timeout=1):  # noqa: S310
                    break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise RuntimeError("fake-gcs-server not ready within 20 s") from None
                time.sleep(0.05)
        yield FakeGcsServer(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()

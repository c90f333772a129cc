"""Real CNCF Distribution registries (``docker-registry``) on loopback for tests.

Each registry writes its own config (filesystem storage under a temp dir, a free port, optional
htpasswd auth and optional notifications to a webhook URL) and is stopped when the context exits.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import yaml

from tests.support.ports import free_port

__all__ = ["RegistryServer", "docker_registry_binary", "registry_server"]


@dataclass(frozen=True)
class RegistryServer:
    """A running docker-registry: its base URL, host:port, data directory and credentials."""

    url: str
    host: str
    root: Path
    username: str = ""
    password: str = ""
    process: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        """Stop the registry process (idempotent), e.g. to simulate an outage."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def docker_registry_binary() -> str:
    """Return the docker-registry executable, failing loudly when the apt package is missing."""
    found = shutil.which("docker-registry") or (
        "/usr/bin/docker-registry" if os.path.exists("/usr/bin/docker-registry") else None
    )
    if found is None:
        raise RuntimeError("docker-registry is not installed: run scripts/setup.sh (apt package)")
    return found


def _config(
    root: Path,
    port: int,
    *,
    htpasswd: Path | None,
    notify_url: str | None,
    notify_secret: str | None,
    also_notify: Sequence[str] = (),
) -> dict[str, object]:
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(root / "data")},
            "delete": {"enabled": True},
            # No caching: tests inspect the filesystem-backed state through the API right away.
            "cache": {},
        },
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret-not-for-prod"},
    }
    if htpasswd is not None:
        config["auth"] = {"htpasswd": {"realm": "test-registry", "path": str(htpasswd)}}
    if notify_url is not None:
        headers = {"Authorization": [f"Bearer {notify_secret}"]} if notify_secret else {}
        # Every event goes to each URL: several replicas, each behind its own endpoint.
        urls = [notify_url, *also_notify]
        config["notifications"] = {
            "endpoints": [
                {
                    "name": "sidecar" if n == 0 else f"sidecar-{n}",
                    "url": url,
                    "headers": headers,
                    "timeout": "2s",
                    "threshold": 3,
                    "backoff": "200ms",
                }
                for n, url in enumerate(urls)
            ]
        }
    return config


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline_s: float = 15.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {proc.returncode} before serving")
        try:
            with urllib.request.urlopen(f"{url}/v2/", timeout=1):  # noqa: S310 - loopback test URL
                return
        except urllib.error.HTTPError as err:
            if err.code == 401:  # auth enabled: the server is up
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry at {url} not ready within {deadline_s}s")


@contextlib.contextmanager
def registry_server(
    root: Path,
    *,
    username: str = "",
    password: str = "",
    notify_url: str | None = None,
    notify_secret: str | None = None,
    port: int | None = None,
    also_notify: Sequence[str] = (),
) -> Iterator[RegistryServer]:
    """Run a docker-registry under ``root`` (auth when ``username`` is set) until the block exits.

    ``port`` pins the port, e.g. to restart a stopped registry where clients expect it;
    ``also_notify`` are more URLs every notification goes to (another replica's endpoint).
    """
    root.mkdir(parents=True, exist_ok=True)
    htpasswd = None
    if username:
        htpasswd = root / "htpasswd"
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd.write_text(f"{username}:{hashed}\n")
    port = port or free_port()
    config_path = root / "config.yml"
    config_path.write_text(
        yaml.safe_dump(
            _config(
                root,
                port,
                htpasswd=htpasswd,
                notify_url=notify_url,
                notify_secret=notify_secret,
                also_notify=also_notify,
            )
        )
    )
    log = (root / "registry.log").open("ab")
    proc = subprocess.Popen(
        [docker_registry_binary(), "serve", str(config_path)], stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    server = RegistryServer(url, f"127.0.0.1:{port}", root, username, password, proc)
    try:
        _wait_ready(url, proc)
        yield server
    finally:
        server.stop()
        log.close()

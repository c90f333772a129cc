"""A fleet of real CNCF Distribution registries and a sidecar config that routes between them.

Five registries on loopback: ``ci`` (the source, sending push/pull notifications to the
sidecar's webhook), ``prod-eu`` (GDPR, behind basic auth), ``prod-us``, ``dev-us`` and
``sandbox``. Used by the end-to-end replication tests and by the README walkthrough::

    .venv/bin/python -m tests.support.fleet --dir /tmp/fleet   # then follow what it prints
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.ports import free_port
from tests.support.registry import RegistryServer, registry_server

__all__ = ["DR_SECONDARY", "FLEET", "Fleet", "free_port", "registry_fleet", "restarted"]

#: name → (region, environment, gdpr, egress cost per GB); ``ci`` is where images are pushed.
FLEET: Mapping[str, tuple[str, str, bool, float]] = {
    "ci": ("us-east-1", "ci", False, 0.01),
    "prod-eu": ("eu-west-1", "prod", True, 0.09),
    "prod-us": ("us-east-1", "prod", False, 0.05),
    "dev-us": ("us-east-1", "dev", False, 0.02),
    "sandbox": ("us-west-2", "sandbox", False, 0.01),
}
#: The optional disaster-recovery secondary (``registry_fleet(dr_secondary=True)``) and the
#: primary it stands in for.
DR_SECONDARY: Mapping[str, tuple[str, str, bool, float]] = {
    "prod-us-dr": ("us-west-2", "prod", False, 0.03),
}
_BACKS = {"prod-us-dr": "prod-us"}
_AUTHENTICATED = "prod-eu"
_NOTIFYING = "ci"


@dataclass(frozen=True)
class Fleet:
    """Running registries plus the sidecar config (a Freightliner ``registries:`` list) for them."""

    servers: Mapping[str, RegistryServer]
    config_path: Path
    grpc_address: str
    webhook_url: str
    state_dir: Path

    def url(self, name: str) -> str:
        """The base URL of registry ``name``."""
        return self.servers[name].url


def _registry_entry(name: str, server: RegistryServer) -> dict[str, Any]:
    region, environment, gdpr, cost = {**FLEET, **DR_SECONDARY}[name]
    auth: dict[str, str] = {"type": "anonymous"}
    if server.username:
        auth = {"type": "basic", "username": server.username, "password": server.password}
    return {
        "name": name,
        "type": "generic",
        "endpoint": server.url,
        "region": region,
        "auth": auth,
        "metadata": {
            "environment": environment,
            "gdpr": gdpr,
            "role": "secondary" if name in _BACKS else "primary",
            **({"backs": _BACKS[name]} if name in _BACKS else {}),
            "egress_cost_per_gb": cost,
        },
    }


def _write_config(
    root: Path,
    servers: Mapping[str, RegistryServer],
    *,
    grpc_port: int,
    webhook_port: int,
    secret: str,
    replication: Mapping[str, Any],
    health: Mapping[str, Any],
) -> Path:
    doc = {
        "registries": [_registry_entry(name, server) for name, server in servers.items()],
        "policy": {
            "listen": f"127.0.0.1:{grpc_port}",
            "metrics_listen": f"127.0.0.1:{free_port()}",
            "state_dir": str(root / "state"),
            "bundle": {"output": str(root / "state" / "bundle.tar.gz")},
            "replication": {
                "webhook": {"listen": f"127.0.0.1:{webhook_port}", "secret": secret},
                **replication,
            },
            **({"health": dict(health)} if health else {}),
        },
    }
    path = root / "sidecar.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@contextlib.contextmanager
def registry_fleet(
    root: Path,
    *,
    replication: Mapping[str, Any] | None = None,
    ports: Mapping[str, int] | None = None,
    grpc_port: int = 0,
    webhook_port: int = 0,
    dr_secondary: bool = False,
    health: Mapping[str, Any] | None = None,
    also_notify: Sequence[str] = (),
) -> Iterator[Fleet]:
    """Start the five registries under ``root`` and write ``root/sidecar.yaml`` for them.

    ``replication`` is merged into ``policy.replication`` (e.g. a short ``lease_s``) and
    ``health`` becomes ``policy.health``; ``dr_secondary`` adds ``prod-us-dr``, the secondary
    backing ``prod-us``. The webhook port is chosen first because ``ci`` must know where to
    send its notifications; ``also_notify``: more webhook URLs ``ci`` notifies (other replicas).
    """
    grpc_port = grpc_port or free_port()
    webhook_port = webhook_port or free_port()
    secret = secrets.token_urlsafe(16)
    webhook_url = f"http://127.0.0.1:{webhook_port}/v1/registry/events"
    with contextlib.ExitStack() as stack:
        servers: dict[str, RegistryServer] = {}
        for name in (*FLEET, *(DR_SECONDARY if dr_secondary else ())):
            auth = name == _AUTHENTICATED
            notify = name == _NOTIFYING
            servers[name] = stack.enter_context(
                registry_server(
                    root / "registries" / name,
                    username="replicator" if auth else "",
                    password=secrets.token_urlsafe(12) if auth else "",
                    notify_url=webhook_url if notify else None,
                    notify_secret=secret if notify else None,
                    port=(ports or {}).get(name),
                    also_notify=also_notify if notify else (),
                )
            )
        config_path = _write_config(
            root,
            servers,
            grpc_port=grpc_port,
            webhook_port=webhook_port,
            secret=secret,
            replication=replication or {},
            health=health or {},
        )
        yield Fleet(servers, config_path, f"127.0.0.1:{grpc_port}", webhook_url, root / "state")


@contextlib.contextmanager
def restarted(server: RegistryServer, *, root: Path | None = None) -> Iterator[RegistryServer]:
    """Start a stopped registry again on its port: same data, or an empty ``root`` (a wipe).

    Notifications are not re-enabled, so restart only registries that do not send them.
    """
    port = int(server.host.rpartition(":")[2])
    with registry_server(
        root or server.root, username=server.username, password=server.password, port=port
    ) as again:
        yield again


def main() -> None:
    """Run the fleet on fixed ports until Ctrl-C (the README walkthrough starts it this way)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="where registries keep data")
    parser.add_argument("--base-port", type=int, default=5001, help="first registry port")
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so the registries are stopped instead of orphaned.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    ports = {name: args.base_port + i for i, name in enumerate(FLEET)}
    with registry_fleet(args.dir.resolve(), ports=ports, grpc_port=50061) as fleet:
        for name, server in fleet.servers.items():
            creds = f"  (basic auth {server.username}:{server.password})" if server.username else ""
            print(f"{name:<8} {server.url}{creds}")
        print(f"\nsidecar config: {fleet.config_path}")
        print(f"  .venv/bin/policy-sidecar --config {fleet.config_path} serve")
        print("Ctrl-C stops the registries.", flush=True)
        with contextlib.suppress(KeyboardInterrupt, SystemExit):
            signal.pause()


if __name__ == "__main__":
    main()

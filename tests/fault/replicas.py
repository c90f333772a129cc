"""Several ``policy-sidecar serve`` processes on one PostgreSQL, behind the same registries.

:func:`replica_world` starts the five registries of tests/support/fleet.py with ``ci`` notifying
every replica's webhook endpoint (Distribution sends each event to each: the same events reach
both replicas), writes one config per replica (its own gRPC, webhook and metrics ports and state
directory; the same ``replication.store`` DSN) and starts each as a real process. What the
replicas did together is read back from their logs: attempts that succeeded per job
(:func:`tests.fault.process.succeeded_attempts`) and push events processed per event id.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import yaml

from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.config import load_config
from sidecar.oci import RegistryClient, RegistryClients
from tests.fault.process import CHANNEL_OPTIONS, SidecarProcess, succeeded_attempts
from tests.support.fleet import Fleet, registry_fleet
from tests.support.ports import free_port

__all__ = ["REPLICA_REVISION", "Replica", "ReplicaWorld", "pushes_processed", "replica_world"]


@dataclass
class Replica:
    """One sidecar process of the fleet, with a stub on its own gRPC port."""

    name: str
    process: SidecarProcess
    stub: pb_grpc.PolicyServiceStub
    webhook_url: str
    metrics_url: str


@dataclass
class ReplicaWorld:
    """The registries, the replicas serving them, and clients that bypass every replica."""

    fleet: Fleet
    clients: RegistryClients
    replicas: list[Replica]
    dsn: str
    root: Path

    @property
    def ci(self) -> RegistryClient:
        """The source registry's client."""
        return self.clients.get("ci")

    def live(self) -> Replica:
        """A replica that runs now (the first one)."""
        for replica in self.replicas:
            if replica.process.alive:
                return replica
        raise AssertionError("no replica runs")

    def successes(self) -> Counter[str]:
        """Attempts logged ``succeeded`` per job id, over every replica and incarnation."""
        total: Counter[str] = Counter()
        for replica in self.replicas:
            total.update(succeeded_attempts(replica.process.log_path))
        return total

    def pushes(self) -> Counter[str]:
        """Push events processed (``registry push`` logged) per event id, over every replica."""
        total: Counter[str] = Counter()
        for replica in self.replicas:
            total.update(pushes_processed(replica.process.log_path))
        return total

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of ``query`` on the shared job store (read-only checks)."""
        with contextlib.closing(psycopg.connect(self.dsn, autocommit=True)) as conn:
            return list(conn.execute(query, list(params)).fetchall())


def pushes_processed(log_path: Path) -> Counter[str]:
    """Push events whose processing started (``registry push``), per event id, in one log."""
    counts: Counter[str] = Counter()
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if '"registry push"' not in line:
            continue
        with contextlib.suppress(ValueError):
            counts[str(json.loads(line).get("event_id"))] += 1
    return counts


def _merge(doc: dict[str, Any], policy: Mapping[str, Any]) -> None:
    for section, values in policy.items():
        current = doc["policy"].get(section)
        if isinstance(current, dict) and isinstance(values, Mapping):
            doc["policy"][section] = {**current, **values}
        else:
            doc["policy"][section] = values


#: The bundle revision every replica's build carries (see _replica_config).
REPLICA_REVISION = "replicas-startup"


def _replica_config(
    fleet: Fleet, root: Path, name: str, *, dsn: str, policy: Mapping[str, Any], webhook_port: int
) -> tuple[Path, str, str]:
    """Write replica ``name``'s config; return its path, gRPC address and metrics URL."""
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    fleet_webhook = dict(doc["policy"]["replication"]["webhook"])  # its secret
    _merge(doc, policy)
    grpc_address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    state = root / name
    replication = doc["policy"]["replication"]
    webhook = {
        **fleet_webhook,
        **replication.get("webhook", {}),
        **dict(policy.get("webhook", {})),
    }
    replication["webhook"] = {**webhook, "listen": f"127.0.0.1:{webhook_port}"}
    replication["store"] = dsn
    doc["policy"].pop("webhook", None)
    doc["policy"].update(
        listen=grpc_address,
        metrics_listen=metrics,
        state_dir=str(state),
        # Every replica builds the same sources, each signed with its own key. A revision is the
        # build's second and content hash, so replicas starting together usually collide on it
        # with different bytes (the losing replica must still start); pinned, every run meets
        # that case instead of one run in many.
        bundle={"output": str(state / "bundle.tar.gz"), "revision": REPLICA_REVISION},
    )
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path, grpc_address, f"http://{metrics}/metrics"


@contextlib.asynccontextmanager
async def replica_world(
    root: Path, dsn: str, policy: Mapping[str, Any], *, replicas: int = 2, start: int | None = None
) -> AsyncIterator[ReplicaWorld]:
    """Start the registries and ``replicas`` sidecars (the first ``start`` of them) on ``dsn``.

    ``policy`` is merged into each replica's ``policy:`` section; ``policy["webhook"]`` into
    ``policy.replication.webhook``. Every replica is stopped when the block exits.
    """
    ports = [free_port() for _ in range(replicas)]
    urls = [f"http://127.0.0.1:{p}/v1/registry/events" for p in ports]
    with registry_fleet(root / "fleet", webhook_port=ports[0], also_notify=urls[1:]) as fleet:
        clients = RegistryClients(load_config(fleet.config_path).registries)
        members: list[Replica] = []
        async with contextlib.AsyncExitStack() as stack:
            stack.push_async_callback(clients.close)
            for n, (port, url) in enumerate(zip(ports, urls, strict=True)):
                name = f"replica-{'abcdefgh'[n]}"
                path, address, metrics = _replica_config(
                    fleet, root, name, dsn=dsn, policy=policy, webhook_port=port
                )
                process = SidecarProcess(path, root / f"{name}.log", address)
                stack.callback(process.stop)
                channel = await stack.enter_async_context(
                    grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS)
                )
                stub = pb_grpc.PolicyServiceStub(channel)
                members.append(Replica(name, process, stub, url, metrics))
            for replica in members[: replicas if start is None else start]:
                replica.process.start()
            for replica in members[: replicas if start is None else start]:
                await replica.process.wait_ready()
            yield ReplicaWorld(fleet, clients, members, dsn, root)

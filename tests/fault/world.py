"""The world a fault scenario runs in: the registry fleet, a sidecar process, images pushed to ``ci``.

:func:`fault_world` starts the five registries of tests/support/fleet.py, writes the sidecar config
(short leases, fast probes, quick retries; registries may be pointed at fault proxies) and starts
``policy-sidecar serve`` as a real process. Images are pushed to ``ci`` like a CI system would: by
digest first, the tag last, so the webhook event that triggers replication sees a whole image.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml

from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.config import load_config
from sidecar.oci import RegistryClient, RegistryClients
from tests.fault.process import CHANNEL_OPTIONS, SidecarProcess
from tests.support.fleet import Fleet
from tests.support.images import push_image, push_manifest, scanned_labels

__all__ = [
    "DESTINATIONS",
    "Pushed",
    "World",
    "decide_deadline_s",
    "fault_world",
    "push_images",
    "settings",
]

DESTINATIONS = ("prod-eu", "prod-us", "dev-us", "sandbox")


@dataclass(frozen=True)
class Pushed:
    """An image pushed to ``ci`` under a tag: what one webhook push event announces."""

    repository: str
    tag: str
    digest: str


def settings(**overrides: Any) -> dict[str, Any]:
    """The ``policy:`` settings of every scenario (fast probes, short leases), with overrides."""
    policy: dict[str, Any] = {
        "fail_mode": "closed",
        "opa": {"deadline_ms": 1000, "timeout_ms": 500, "breaker_cooldown_s": 0.5},
        "replication": {
            "lease_s": 2,
            # Events a killed sidecar had claimed are taken over this soon (merged into the
            # fleet's webhook settings, which keep their listener and secret).
            "webhook": {"lease_s": 2},
            "workers": 4,
            "request_timeout_s": 5,
            "enrich_timeout_s": 1,
            "retry": {"max_attempts": 5, "base_s": 0.1, "max_s": 1.0},
        },
        "health": {
            "interval_s": 0.25,
            "timeout_s": 1,
            "failure_threshold": 2,
            "success_threshold": 2,
            "min_dwell_s": 0,
            "sweep_interval_s": 1,
        },
    }
    for section, values in overrides.items():
        if isinstance(values, Mapping) and isinstance(policy.get(section), dict):
            policy[section] = {**policy[section], **values}
        else:
            policy[section] = values
    return policy


def decide_deadline_s(policy: Mapping[str, Any]) -> float:
    """How long one Decide may take: enrichment's timeout plus OPA's deadline, plus 0.5 s slack."""
    opa_s = float(policy["opa"]["deadline_ms"]) / 1000
    return float(policy["replication"]["enrich_timeout_s"]) + opa_s + 0.5


@dataclass
class World:
    """A running fleet, the sidecar process serving it, and clients that bypass every proxy."""

    fleet: Fleet
    clients: RegistryClients
    sidecar: SidecarProcess
    channel: grpc.aio.Channel
    stub: pb_grpc.PolicyServiceStub
    policy: Mapping[str, Any]
    root: Path

    @property
    def ci(self) -> RegistryClient:
        """The source registry's client."""
        return self.clients.get("ci")


def _write_config(fleet: Fleet, policy: Mapping[str, Any], endpoints: Mapping[str, str]) -> Path:
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    for entry in doc["registries"]:
        entry["endpoint"] = endpoints.get(entry["name"], entry["endpoint"])
    webhook = dict(doc["policy"]["replication"]["webhook"])
    for section, values in policy.items():
        current = doc["policy"].get(section)
        if isinstance(current, dict) and isinstance(values, Mapping):
            doc["policy"][section] = {**current, **values}
        else:
            doc["policy"][section] = values
    replication = doc["policy"]["replication"]
    replication["webhook"] = {**webhook, **replication.get("webhook", {})}
    path = fleet.config_path.with_name("sidecar-fault.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def fault_world(
    fleet: Fleet,
    root: Path,
    policy: Mapping[str, Any],
    *,
    endpoints: Mapping[str, str] | None = None,
) -> AsyncIterator[World]:
    """Start the sidecar for ``fleet`` with ``policy`` settings; ``endpoints`` reroute registries."""
    clients = RegistryClients(load_config(fleet.config_path).registries)
    path = _write_config(fleet, policy, endpoints or {})
    sidecar = SidecarProcess(path, root / "sidecar.log", fleet.grpc_address)
    sidecar.start()
    try:
        await sidecar.wait_ready()
        async with grpc.aio.insecure_channel(fleet.grpc_address, options=CHANNEL_OPTIONS) as ch:
            yield World(fleet, clients, sidecar, ch, pb_grpc.PolicyServiceStub(ch), policy, root)
    finally:
        sidecar.stop()
        await clients.close()


async def push_one(
    ci: RegistryClient, name: str, rng: random.Random, *, layer_kib: int = 64, kind: str = ""
) -> Pushed:
    """Push one image (a prod, dev or plain tag; ``rng`` picks unless ``kind`` says), tag last.

    A ``prod-`` tag routes to prod-eu and prod-us, ``dev-`` to dev-us, any other to sandbox.
    """
    kind = kind or rng.choice(("prod", "prod", "dev", "plain"))
    seed = rng.randrange(1 << 30)
    labels = scanned_labels(criticality=rng.choice(("low", "normal", "high")))
    sizes = [layer_kib << 10, rng.randrange(4, 32) << 10]
    image = await push_image(ci, name, seed=seed, layer_sizes=sizes, labels=labels)
    tag = {"prod": "prod-1", "dev": "dev-1", "plain": "v1"}[kind]
    await push_manifest(ci, name, (await ci.get_manifest(name, image.digest)).json, tag)
    return Pushed(name, tag, image.digest)


async def push_images(
    ci: RegistryClient, prefix: str, count: int, rng: random.Random, *, layer_kib: int = 64
) -> list[Pushed]:
    """Push ``count`` images one after another (each in its own repository)."""
    return [await push_one(ci, f"{prefix}/app{n}", rng, layer_kib=layer_kib) for n in range(count)]

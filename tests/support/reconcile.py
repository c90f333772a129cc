"""Helpers of the reconciler's end-to-end tests: the fleet and its clients (pytest fixtures,
registered in tests/conftest.py), its config, where an image is."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sidecar.config import Config, ReconcileSettings, load_config
from sidecar.oci import RegistryClients
from tests.support.fleet import FLEET, Fleet, registry_fleet
from tests.support.sidecar import isolated_config


@contextlib.asynccontextmanager
async def fleet_clients(fleet: Fleet) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry of ``fleet`` (with prod-eu's credentials), closed after."""
    pool = RegistryClients(load_config(fleet.config_path).registries)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """The five registries, with a short lease so an in-process worker pool turns jobs over fast."""
    with registry_fleet(tmp_path, replication={"lease_s": 5, "workers": 4}) as running:
        yield running


@pytest.fixture
async def clients(fleet: Fleet) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry of the fleet."""
    async with fleet_clients(fleet) as pool:
        yield pool


async def holders(clients: RegistryClients, repository: str, digest: str) -> frozenset[str]:
    """The registries other than ``ci`` holding ``repository@digest``."""
    found = set()
    for name in FLEET:
        if name != "ci" and await clients.get(name).head_manifest(repository, digest) is not None:
            found.add(name)
    return frozenset(found)


def reconcile_config(fleet: Fleet, tmp_path: Path, **reconcile: object) -> Config:
    """The fleet's sidecar config, isolated under ``tmp_path``, reconciling from ``ci``."""
    settings = ReconcileSettings(sources=("ci",), **reconcile)  # type: ignore[arg-type]
    config = isolated_config(load_config(fleet.config_path), tmp_path / "state")
    return dataclasses.replace(
        config, policy=dataclasses.replace(config.policy, reconcile=settings)
    )

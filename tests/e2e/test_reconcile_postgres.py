"""Two sidecar processes on one PostgreSQL asked to apply a reconcile at the same moment.

Both run ``policy-sidecar reconcile --apply`` against the same job store (``replication.store``
on a real PostgreSQL) and the same five registries. The ``reconcile-apply`` lease lets one run
apply; the other is refused at once (``reconcile_busy``, exit 1). Every planned action is then
executed exactly once: one succeeded job per copy and per removal in the shared store, one
``DELETE`` per removal at the registry's door (a counting proxy in front of ``prod-us``), and the
registries read back by digest hold exactly what the plan said.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
import yaml

from sidecar.config import load_config
from sidecar.oci import RegistryClients
from tests.support.counting_proxy import CountingProxy, counting_proxy
from tests.support.fleet import Fleet, registry_fleet
from tests.support.images import push_image, push_manifest, scanned_labels

# clock: decisions use the wall clock (scan ages)
pytestmark = [pytest.mark.timeout(300), pytest.mark.clock]


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    """The five registries."""
    with registry_fleet(tmp_path / "fleet") as running:
        yield running


@pytest.fixture
async def clients(fleet: Fleet) -> AsyncIterator[RegistryClients]:
    """Our OCI client for every registry, straight (not through the proxy)."""
    pool = RegistryClients(load_config(fleet.config_path).registries)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
def prod_us_door(fleet: Fleet) -> Iterator[CountingProxy]:
    """A counting proxy in front of prod-us: every request the sidecars send it, by method."""
    with counting_proxy(fleet.url("prod-us")) as proxy:
        yield proxy


async def _push(clients: RegistryClients, repository: str, seed: int, to: tuple[str, ...],
                **labels: str) -> str:  # fmt: skip
    digests, scanned = set(), scanned_labels(**labels)  # one scan time: the same bytes
    for name in to:
        client = clients.get(name)
        image = await push_image(client, repository, seed=seed, labels=scanned)
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, "prod-1")
        digests.add(image.digest)
    (digest,) = digests
    return digest


def _replica_config(fleet: Fleet, tmp_path: Path, name: str, dsn: str, proxy: str) -> Path:
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    for entry in doc["registries"]:
        if entry["name"] == "prod-us":
            entry["endpoint"] = proxy
    state = tmp_path / name
    doc["policy"]["state_dir"] = str(state)
    doc["policy"]["bundle"] = {"output": str(state / "bundle.tar.gz")}
    replication = doc["policy"]["replication"]
    replication["store"] = dsn
    # Slow enough that the two runs overlap: the winner is still copying when the other asks.
    replication["registry_rate_limit_rps"] = {"prod-us": 10.0, "prod-eu": 10.0}
    doc["policy"]["reconcile"] = {"sources": ["ci"], "max_removals_per_run": 50}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _jobs(dsn: str) -> list[tuple[str, ...]]:
    with contextlib.closing(psycopg.connect(dsn)) as conn:
        rows = conn.execute(
            "SELECT kind, destination_registry, destination_repository, tag, digest, state "
            "FROM jobs ORDER BY kind, destination_repository, destination_registry"
        ).fetchall()
    return [tuple(str(c) for c in row) for row in rows]


async def test_two_sidecars_on_one_postgresql_apply_one_at_a_time_each_action_once(
    fleet: Fleet,
    clients: RegistryClients,
    prod_us_door: CountingProxy,
    postgres_dsn: str,
    tmp_path: Path,
) -> None:
    apps = {f"pg/app{n}": await _push(clients, f"pg/app{n}", 500 + n, ("ci",)) for n in range(4)}
    legacy = ("ci", "prod-us", "prod-eu")  # a legacy rule had copied these to prod-us too
    required = {"compliance-required": "true"}
    eu = {f"pg/eu{n}": await _push(clients, f"pg/eu{n}", 600 + n, legacy, **required)
          for n in range(2)}  # fmt: skip
    prod_us_door.reset()
    configs = [
        _replica_config(fleet, tmp_path, name, postgres_dsn, prod_us_door.url)
        for name in ("replica-a", "replica-b")
    ]
    commands = [
        [sys.executable, "-m", "sidecar", "--config", str(c), "reconcile", "--apply", "--quiet"]
        for c in configs
    ]
    runs = [
        await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        for command in commands
    ]
    outputs = await asyncio.gather(*(r.communicate() for r in runs))
    codes = sorted(r.returncode or 0 for r in runs)
    errors = [err.decode() for _, err in outputs]
    # One applied, the other was refused at once while the first held the lease.
    assert codes == [0, 1], errors
    [refused] = [e for r, e in zip(runs, errors, strict=True) if r.returncode == 1]
    assert "another reconcile is applying" in refused, refused

    # Every planned action executed once: one job each in the shared store, all succeeded.
    copies = [
        ("copy", registry, repo, "prod-1", digest, "succeeded")
        for repo, digest in apps.items()
        for registry in ("prod-eu", "prod-us")
    ]
    deletes = [("delete", "prod-us", repo, "prod-1", d, "succeeded") for repo, d in eu.items()]
    expected = sorted(copies + deletes)
    assert sorted(_jobs(postgres_dsn)) == expected
    # One DELETE per removal reached the registry.
    assert prod_us_door.counts()["methods"].get("DELETE", 0) == len(eu)
    for repo, digest in apps.items():
        for registry in ("prod-eu", "prod-us"):
            held = await clients.get(registry).head_manifest(repo, "prod-1")
            assert held is not None and held.digest == digest
    for repo, digest in eu.items():
        assert await clients.get("prod-us").head_manifest(repo, digest) is None
        assert await clients.get("prod-eu").head_manifest(repo, digest) is not None
        source = await clients.get("ci").head_manifest(repo, "prod-1")
        assert source is not None and source.digest == digest

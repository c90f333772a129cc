"""Reconcile crash storm: SIGKILL ``policy-sidecar reconcile --apply`` with copies AND deletes in flight.

Images sit in ``ci`` with no copies (backfills: copies to ``prod-eu`` and ``prod-us``) beside
compliance-required images that a legacy rule had copied to the non-GDPR ``prod-us`` (removals,
NOT_GDPR). ``prod-us`` and ``prod-eu`` are reached through counting proxies, so every ``DELETE``
the sidecar sends is counted at the registry's door. Each round starts an applying run and kills
it (SIGKILL) once a delete job is durable while copy jobs are still queued or running
(``wait_s`` is short and the destinations are rate-limited, so removals start while copies
run); the next run waits for the killed run's ``reconcile-apply`` lease to lapse. A last run
must then exit 0, and:

- every backfill is at ``prod-eu`` and ``prod-us`` by digest, every compliance image only at
  ``prod-eu``, every original still in ``ci``;
- one ``DELETE`` per planned removal reached ``prod-us`` (nothing removed twice), none any other
  registry, and every delete job names a planned (registry, repository, tag, digest).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from sidecar.config import load_config
from sidecar.oci import RegistryClients
from tests.fault.figures import FaultFigures
from tests.support.counting_proxy import CountingProxy, counting_proxy
from tests.support.fleet import Fleet, registry_fleet
from tests.support.images import push_image, push_manifest, scanned_labels

__all__ = ["ReconcileCrashSize", "reconcile_crash"]

_PROXIED = ("prod-eu", "prod-us")
_LEASE_S = 2


@dataclass(frozen=True)
class ReconcileCrashSize:
    """How big: images to backfill, compliance images to remove from prod-us, kills, seed."""

    backfills: int = 6
    removals: int = 4
    kills: int = 2
    seed: int = 13
    # Requests/s the sidecar may send each destination: slow enough that copies are in flight
    # when the removals start.
    destination_rps: float = 8.0
    run_timeout_s: float = 240.0


async def _push(clients: RegistryClients, repository: str, seed: int, to: tuple[str, ...],
                **labels: str) -> str:  # fmt: skip
    digests, scanned = set(), scanned_labels(**labels)  # one scan time: the same bytes
    for name in to:
        client = clients.get(name)
        image = await push_image(client, repository, seed=seed, labels=scanned, layer_sizes=(4096,))
        manifest = await client.get_manifest(repository, image.digest)
        await push_manifest(client, repository, manifest.json, "prod-1")
        digests.add(image.digest)
    (digest,) = digests
    return digest


def _rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    if not db.exists():
        return []
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return list(conn.execute(sql).fetchall())
    except sqlite3.Error:
        return []  # created but not yet migrated


def _in_flight(db: Path) -> tuple[int, int]:
    """(copy jobs not ended, delete jobs recorded and not ended)."""
    rows = _rows(
        db,
        "SELECT kind, COUNT(*) FROM jobs WHERE state NOT IN ('succeeded', 'failed', 'skipped') "
        "GROUP BY kind",
    )
    counts = {str(kind): int(n) for kind, n in rows}
    return counts.get("copy", 0), counts.get("delete", 0)


def _write_config(fleet: Fleet, root: Path, proxies: dict[str, CountingProxy],
                  size: ReconcileCrashSize, *, wait_s: float, name: str) -> Path:  # fmt: skip
    doc = yaml.safe_load(fleet.config_path.read_text(encoding="utf-8"))
    for entry in doc["registries"]:
        if entry["name"] in proxies:
            entry["endpoint"] = proxies[entry["name"]].url
    state = root / "state"
    doc["policy"]["state_dir"] = str(state)
    doc["policy"]["bundle"] = {"output": str(state / "bundle.tar.gz")}
    doc["policy"]["replication"]["registry_rate_limit_rps"] = {
        n: size.destination_rps for n in _PROXIED
    }
    doc["policy"]["reconcile"] = {
        "sources": ["ci"],
        "lease_s": _LEASE_S,
        "wait_s": wait_s,
        "max_removals_per_run": size.removals + 10,
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


async def _killed_run(command: list[str], db: Path, log: IO[bytes], rng: random.Random,
                      timeout_s: float) -> bool:  # fmt: skip
    """Start an applying run, SIGKILL it once a delete job is durable; True when copies ran too."""
    run = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=log)
    deadline = time.monotonic() + timeout_s
    both = False
    while run.returncode is None and time.monotonic() < deadline:
        copies, deletes = _in_flight(db)
        if deletes:
            both = copies > 0
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            break
        await asyncio.sleep(0.02)
    if run.returncode is None:
        run.kill()
    await run.wait()
    await asyncio.sleep(_LEASE_S + 0.5)  # the killed run's lease lapses
    return both


async def _last_run(command: list[str], log: IO[bytes], timeout_s: float) -> int:
    run = await asyncio.create_subprocess_exec(*command, stdout=log, stderr=log)
    try:
        return await asyncio.wait_for(run.wait(), timeout_s)
    except TimeoutError:
        run.kill()
        await run.wait()
        return -1


@dataclass
class _Outcome:
    missing: int = 0
    removed: int = 0
    violations: list[str] = field(default_factory=list)


async def _read_back(direct: RegistryClients, backfills: list[tuple[str, str]],
                     removals: list[tuple[str, str]]) -> _Outcome:  # fmt: skip
    """Read the registries back by digest: what the plan promised, and nothing else."""
    out = _Outcome()
    for repository, digest in backfills:
        for name in _PROXIED:
            if await direct.get(name).head_manifest(repository, digest) is None:
                out.missing += 1
                out.violations.append(f"missing: {name}/{repository}@{digest[:19]}")
    for repository, digest in removals:
        if await direct.get("prod-us").head_manifest(repository, digest) is None:
            out.removed += 1
        else:
            out.violations.append(f"not removed: prod-us/{repository}@{digest[:19]}")
        if await direct.get("prod-eu").head_manifest(repository, digest) is None:
            out.violations.append(f"removed outside the plan: prod-eu/{repository}")
    for repository, _ in [*backfills, *removals]:
        if await direct.get("ci").head_manifest(repository, "prod-1") is None:
            out.violations.append(f"the source lost {repository}:prod-1")
    return out


async def reconcile_crash(root: Path, size: ReconcileCrashSize) -> FaultFigures:
    """Run the storm under ``root``; return its figures (violations say what broke)."""
    rng = random.Random(size.seed)  # noqa: S311 - reproducible, not secret
    began = time.monotonic()
    with registry_fleet(root / "fleet") as fleet, contextlib.ExitStack() as stack:
        proxies = {n: stack.enter_context(counting_proxy(fleet.url(n))) for n in _PROXIED}
        direct = RegistryClients(load_config(fleet.config_path).registries)
        try:
            backfills = [
                (f"crash/app{n}", await _push(direct, f"crash/app{n}", 300 + n, ("ci",)))
                for n in range(size.backfills)
            ]
            legacy = ("ci", "prod-us", "prod-eu")  # a legacy rule had copied these to prod-us
            required = {"compliance-required": "true"}
            removals = [
                (f"crash/eu{n}", await _push(direct, f"crash/eu{n}", 400 + n, legacy, **required))
                for n in range(size.removals)
            ]
            for proxy in proxies.values():
                proxy.reset()
            # The killed runs wait 1 s for their copies: removals start while copies still run
            # (both kinds in flight at a kill). The last run waits as long as it takes.
            killed, last = (
                _write_config(fleet, root, proxies, size, wait_s=w, name=n)
                for w, n in ((1, "killed"), (size.run_timeout_s, "last"))
            )
            command = [sys.executable, "-m", "sidecar", "--config", str(killed), "reconcile",
                       "--apply", "--quiet"]  # fmt: skip
            db = root / "state" / "jobs.db"
            log = stack.enter_context((root / "sidecar.log").open("ab"))
            kills_with_both = 0
            for _ in range(size.kills):
                kills_with_both += await _killed_run(command, db, log, rng, size.run_timeout_s)
            command[command.index(str(killed))] = str(last)
            code = await _last_run(command, log, size.run_timeout_s + 30)
            converged_s = time.monotonic() - began
            out = await _read_back(direct, backfills, removals)
        finally:
            await direct.close()
        if code != 0:
            out.violations.append(f"the last reconcile --apply exited {code}")
        deletes = {n: int(p.counts()["methods"].get("DELETE", 0)) for n, p in proxies.items()}
    if deletes["prod-us"] > size.removals:
        out.violations.append(
            f"{deletes['prod-us']} DELETEs at prod-us for {size.removals} removals"
        )
    if deletes["prod-eu"]:
        out.violations.append(f"{deletes['prod-eu']} DELETE(s) at prod-eu")
    planned = {("prod-us", r, "prod-1", d) for r, d in removals}
    jobs = _rows(
        db,
        "SELECT destination_registry, destination_repository, tag, digest FROM jobs "
        "WHERE kind = 'delete'",
    )
    out.violations += [f"a delete job the plan did not list: {j}" for j in jobs if j not in planned]
    return FaultFigures(
        fault="reconcile --apply SIGKILL",
        injections=size.kills,
        served=0,  # no Decide load in this class: the runs are the subject
        failed=0,
        degraded=0,
        over_deadline=0,
        deadline_s=0.0,
        max_latency_s=0.0,
        jobs_expected=2 * size.backfills + size.removals,
        completed=2 * size.backfills - out.missing + out.removed,
        duplicated=max(0, deletes["prod-us"] - size.removals),
        lost=out.missing + size.removals - out.removed,
        misplaced=deletes["prod-eu"],
        incomplete=0,
        recover_s=None,
        converge_s=round(converged_s, 1),
        wall_s=round(time.monotonic() - began, 1),
        notes=(
            f"{size.backfills} backfills (2 copies each) and {size.removals} NOT_GDPR removals "
            f"from prod-us; {size.kills} SIGKILLs of reconcile --apply, {kills_with_both} with "
            "copy and delete jobs in flight at once; DELETEs counted at the registries' door"
        ),
        violations=tuple(out.violations),
        details={
            "kills_copies_and_deletes_in_flight": kills_with_both,
            "deletes_at_prod_us": deletes["prod-us"],
            "delete_jobs": len(jobs),
        },
    )

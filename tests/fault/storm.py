"""The resilience storm: every fault class at full size, with a figures table (issue 5).

    .venv/bin/python -m tests.fault.storm                      # full size (CI runs this)
    .venv/bin/python -m tests.fault.storm --kills 20 --images 200 --only crash
    .venv/bin/python -m tests.fault.storm --quick              # the sizes pytest uses

Each fault class runs on its own fleet of real registries and its own sidecar process. The
table is printed and written as ``resilience.json`` and ``resilience.md`` under ``--out`` (with
the sidecar's log of any class that failed); the exit status is 1 when any class broke a
promise (a job lost or duplicated, a stray or half-written image, a request past its deadline).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.fault.crash import CrashSize, crash_storm
from tests.fault.figures import FaultFigures, markdown, write_report
from tests.fault.network import NetworkSize, partition, slow_link, throttling
from tests.fault.outages import OutageSize, opa_outage, registry_outage
from tests.fault.reconcile_crash import ReconcileCrashSize, reconcile_crash
from tests.fault.replica_storm import ReplicaStormSize, replica_storm

__all__ = ["FULL", "QUICK", "Sizes", "run_fault"]


@dataclass(frozen=True)
class Sizes:
    """How big each fault class runs."""

    crash: CrashSize
    opa: OutageSize
    registry: OutageSize
    throttle: NetworkSize
    slow: NetworkSize
    partition: NetworkSize
    reconcile: ReconcileCrashSize = dataclasses.field(default_factory=ReconcileCrashSize)
    replicas: ReplicaStormSize = dataclasses.field(default_factory=ReplicaStormSize)


#: Small enough for every test run: the whole set takes about two minutes on two cores.
QUICK = Sizes(
    crash=CrashSize(images=10, kills=4),
    opa=OutageSize(images=3, outages=2),
    registry=OutageSize(images=3, outages=1),
    throttle=NetworkSize(images=6, fault_s=6.0, bursts=3),
    slow=NetworkSize(images=6),
    partition=NetworkSize(images=6, fault_s=12.0),
    reconcile=ReconcileCrashSize(backfills=6, removals=4, kills=2),
    replicas=ReplicaStormSize(images=8, kills=4),
)
#: The documented storm (``.ci/run`` runs it after pytest).
FULL = Sizes(
    crash=CrashSize(images=200, kills=20, destination_rps=25.0, converge_timeout_s=300.0),
    opa=OutageSize(images=6, outages=5, outage_s=3.0),
    registry=OutageSize(images=8, outages=3, outage_s=4.0),
    throttle=NetworkSize(images=20, fault_s=8.0, bursts=5),
    slow=NetworkSize(images=30),
    partition=NetworkSize(images=16, fault_s=16.0),
    reconcile=ReconcileCrashSize(backfills=20, removals=10, kills=4),
    replicas=ReplicaStormSize(images=16, kills=8),
)

Scenario = Callable[[Path, Sizes], Awaitable[FaultFigures]]
SCENARIOS: Mapping[str, Scenario] = {
    "crash": lambda root, s: crash_storm(root, s.crash),
    "opa": lambda root, s: opa_outage(root, s.opa),
    "registry": lambda root, s: registry_outage(root, s.registry),
    "throttle": lambda root, s: throttling(root, s.throttle),
    "slow-link": lambda root, s: slow_link(root, s.slow),
    "partition": lambda root, s: partition(root, s.partition),
    "reconcile": lambda root, s: reconcile_crash(root, s.reconcile),
    "replicas": lambda root, s: replica_storm(root, s.replicas),
}


async def run_fault(name: str, root: Path, sizes: Sizes = QUICK) -> FaultFigures:
    """Run fault class ``name`` under ``root`` (one of :data:`SCENARIOS`)."""
    return await SCENARIOS[name](root, sizes)


def _sizes(args: argparse.Namespace) -> Sizes:
    base = QUICK if args.quick else FULL
    crash = base.crash
    if args.kills is not None or args.images is not None or args.seed is not None:
        crash = CrashSize(
            images=args.images if args.images is not None else crash.images,
            kills=args.kills if args.kills is not None else crash.kills,
            seed=args.seed if args.seed is not None else crash.seed,
            layer_kib=crash.layer_kib,
            destination_rps=crash.destination_rps,
            converge_timeout_s=crash.converge_timeout_s,
        )
    return dataclasses.replace(base, crash=crash)


async def _main(args: argparse.Namespace) -> int:
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        print(f"unknown fault class(es) {unknown}; known: {sorted(SCENARIOS)}", file=sys.stderr)
        return 2
    sizes = _sizes(args)
    rows: list[FaultFigures] = []
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault-storm-") as tmp:
        for name in names:
            print(f"== fault class {name}", file=sys.stderr, flush=True)
            row = await run_fault(name, Path(tmp) / name, sizes)
            print(markdown([row]), file=sys.stderr, flush=True)
            rows.append(row)
            if not row.ok:  # keep the evidence: the temporary directory goes away
                args.out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(tmp) / name / "sidecar.log", args.out / f"{name}-sidecar.log")
    meta = {
        "command": "python -m tests.fault.storm " + shlex.join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.monotonic() - began, 1),
        "mode": "quick" if args.quick else "full",
    }
    json_path, md_path = write_report(rows, args.out, meta)
    print(markdown(rows))
    print(f"written: {json_path} and {md_path} ({meta['wall_s']} s)")
    failed = [r.fault for r in rows if not r.ok]
    print(f"storm: {len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main() -> None:
    """Parse arguments and run the storm."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small sizes pytest uses")
    parser.add_argument("--kills", type=int, help="SIGKILLs in the crash storm")
    parser.add_argument("--images", type=int, help="images pushed in the crash storm")
    parser.add_argument("--seed", type=int, help="the crash storm's RNG seed")
    parser.add_argument("--only", help="comma-separated fault classes: " + ",".join(SCENARIOS))
    parser.add_argument(
        "--out", type=Path, default=Path("build/resilience"), help="where the table is written"
    )
    sys.exit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()

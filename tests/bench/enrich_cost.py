"""CPU cost of enriching one request (observation, the fact-trust merge, provenance), no OPA.

Run:  .venv/bin/python -m tests.bench.enrich_cost [--requests 5000] [--rounds 3]

Enriches a 12-label request against the case-table config (tests/cases/sidecar.yaml) in process,
as a caller with an override role (so every stated fact is merged, none refused), and reports the
best round's CPU time per request (``time.process_time``: a busy neighbour does not inflate it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from sidecar.config import load_config
from sidecar.enrich import StaticEnricher
from sidecar.model.decision import Caller, DecideRequest, ImageRef

CASES_CONFIG = Path(__file__).resolve().parents[1] / "cases" / "sidecar.yaml"
LABELS = {
    "security.scan.status": "passed",
    "security.scan.completed-at": "2026-11-27T08:00:00Z",
    "security.scan.critical": "0",
    "criticality": "high",
    **{f"team.k{i}": "v" for i in range(8)},
}


async def _round(enricher: StaticEnricher, request: DecideRequest, count: int) -> float:
    started = time.process_time()
    for _ in range(count):
        await enricher.enrich_traced(request)
    return (time.process_time() - started) / count


async def main(requests: int, rounds: int) -> None:
    """Print the best round's CPU microseconds per enrichment."""
    enricher = StaticEnricher(load_config(CASES_CONFIG))
    request = DecideRequest(
        ImageRef("ci", "acme/app", "prod-1"),
        labels=LABELS,
        access={"eu-west-1": 3},
        caller=Caller("bench", roles=("replay",)),
    )
    await _round(enricher, request, 200)  # warm up
    best = min([await _round(enricher, request, requests) for _ in range(rounds)])
    print(f"enrich: {best * 1e6:.1f} µs CPU per request (best of {rounds} rounds of {requests})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.rounds))

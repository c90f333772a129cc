"""The Decide path's frames in cProfile stats of ``policy-sidecar bench --profile``, per decision.

Run:  .venv/bin/python -m tests.bench.profile_frames BEFORE.prof AFTER.prof [--decisions 4200]

Prints a markdown table: for each frame of the hot path (handler chain, decision, enrichment,
OPA query, spans, log line, records, conversions, GC-visible interceptor work), its cumulative
time divided by the number of ``Decide`` calls, in each profile. cProfile measures wall time, so
on a loaded machine the sizes are relative, not CPU costs.
"""

from __future__ import annotations

import argparse
import pstats
import sys
from collections.abc import Sequence

__all__ = ["FRAMES", "main"]

#: (label, file suffix, function name): the frames docs/benchmarks.md reports.
FRAMES = (
    ("gRPC handler chain (interceptors + Decide)", "sidecar/api/_metrics.py", "coroutine"),
    ("decode interceptor: wrap the handler", "sidecar/api/_decode.py", "intercept_service"),
    ("DecisionService.decide", "sidecar/decide.py", "decide"),
    ("enrichment", "sidecar/enrich/static.py", "enrich_traced"),
    ("OPA query (span, retries, HTTP)", "sidecar/decide.py", "_observed_query"),
    ("spans started (all)", "opentelemetry/sdk/trace/__init__.py", "start_span"),
    ("decision log line (structlog)", "structlog/_native.py", "meth"),
    ("decision record (Explain)", "sidecar/records.py", "put"),
    ("request proto → model", "sidecar/api/convert.py", "decide_request_from_proto"),
    ("decision → proto", "sidecar/api/convert.py", "decide_response_to_proto"),
    ("OPA JSON → Decision", "sidecar/model/decision.py", "from_json"),
)


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> float:
    total = 0.0
    for (filename, _, function), row in stats.stats.items():  # type: ignore[attr-defined]
        if filename.endswith(suffix) and function == name:
            total += row[3]
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Print the per-decision table for the given profiles."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile_frames")
    parser.add_argument("profiles", nargs="+")
    parser.add_argument("--decisions", type=int, default=4200, help="Decide calls in each run")
    args = parser.parse_args(argv)
    stats = [pstats.Stats(p) for p in args.profiles]
    print("| frame (ms per decision) | " + " | ".join(args.profiles) + " |")
    print("|---|" + "---:|" * len(stats))
    for label, suffix, name in FRAMES:
        cells = [f"{_cumulative(s, suffix, name) * 1000 / args.decisions:.3f}" for s in stats]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

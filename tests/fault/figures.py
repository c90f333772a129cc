"""The figures of one fault class, and the table (JSON and markdown) of a whole run."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.fault.check import Jobs, Outcome, Placement
from tests.fault.load import DecideLoad

__all__ = ["FaultFigures", "figures", "markdown", "settled_figures", "write_report"]


@dataclass(frozen=True)
class FaultFigures:
    """What one fault class did to service: requests, jobs, placement, recovery, and violations."""

    fault: str
    injections: int
    served: int
    failed: int
    degraded: int
    over_deadline: int
    deadline_s: float
    max_latency_s: float
    jobs_expected: int
    completed: int
    duplicated: int
    lost: int
    misplaced: int
    incomplete: int
    # Worst time from the end of one injected fault until service was normal again.
    recover_s: float | None
    # From the end of the last fault until every job of the intent had succeeded.
    converge_s: float | None
    wall_s: float
    notes: str = ""
    violations: tuple[str, ...] = ()
    # The most common errors of failed Decide calls, "n x CODE: details".
    failures: tuple[str, ...] = ()
    # Scenario-specific counts (kills mid-copy, 429s answered, writes held, ...).
    details: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No job lost or duplicated, no stray or half-written image, nothing hung."""
        return not self.violations


def figures(
    fault: str,
    *,
    injections: int,
    load: DecideLoad,
    jobs: Jobs,
    place: Placement,
    recover_s: float | None,
    converge_s: float | None,
    wall_s: float,
    notes: str = "",
    hung: Sequence[str] = (),
    extra: Sequence[str] = (),
    details: Mapping[str, float] | None = None,
) -> FaultFigures:
    """Combine a scenario's measurements; every broken promise becomes a violation."""
    violations = [*jobs.problems(), *hung, *extra]
    if converge_s is None:
        violations.append("the jobs of the intent never all succeeded")
    violations += [f"missing: {m}" for m in place.missing[:5]]
    violations += [f"not in the intent: {m}" for m in place.misplaced[:5]]
    violations += [f"half-written: {m}" for m in place.incomplete[:5]]
    if load.over_deadline:
        violations.append(
            f"{load.over_deadline} Decide call(s) over the {load.deadline_s:g} s deadline "
            f"(slowest {load.max_latency_s:.2f} s)"
        )
    return FaultFigures(
        fault=fault,
        injections=injections,
        served=load.count("served"),
        failed=load.count("failed"),
        degraded=load.count("degraded"),
        over_deadline=load.over_deadline,
        deadline_s=load.deadline_s,
        max_latency_s=round(load.max_latency_s, 3),
        jobs_expected=jobs.expected,
        completed=jobs.completed,
        duplicated=jobs.duplicated,
        lost=jobs.lost,
        misplaced=len(place.misplaced),
        incomplete=len(place.incomplete),
        recover_s=None if recover_s is None else round(recover_s, 2),
        converge_s=None if converge_s is None else round(converge_s, 2),
        wall_s=round(wall_s, 1),
        notes=notes,
        violations=tuple(violations),
        details=dict(details or {}),
        failures=tuple(f"{n} x {error}" for error, n in load.errors.most_common(3)),
    )


def _s(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


_HEADER = (
    "| fault class | injections | requests served / failed / degraded | over deadline "
    "| jobs completed / expected | duplicated | lost | stray / half-written "
    "| time to recover (s) | converged after (s) |"
)


def settled_figures(
    fault: str,
    end: Outcome,
    *,
    injections: int,
    load: DecideLoad,
    began: float,
    recover_s: float | None = None,
    notes: str = "",
    hung: Sequence[str] = (),
    extra: Sequence[str] = (),
    details: Mapping[str, float] | None = None,
) -> FaultFigures:
    """:func:`figures` of a scenario that ended with :func:`settle` (``began``: its monotonic start)."""
    return figures(
        fault,
        injections=injections,
        load=load,
        jobs=end.accounting,
        place=end.place,
        recover_s=recover_s,
        converge_s=end.converge_s,
        wall_s=time.monotonic() - began,
        notes=notes,
        hung=hung,
        extra=extra,
        details=details,
    )


def markdown(rows: Sequence[FaultFigures]) -> str:
    """The table, one row per fault class, then each class's notes and violations."""
    lines = [_HEADER, "|" + " --- |" * 10]
    for r in rows:
        lines.append(
            f"| {r.fault} | {r.injections} | {r.served} / {r.failed} / {r.degraded} "
            f"| {r.over_deadline} (max {r.max_latency_s:.2f} s ≤ {r.deadline_s:g} s) "
            f"| {r.completed} / {r.jobs_expected} | {r.duplicated} | {r.lost} "
            f"| {r.misplaced} / {r.incomplete} | {_s(r.recover_s)} | {_s(r.converge_s)} |"
        )
    lines.append("")
    for r in rows:
        lines.append(f"- **{r.fault}** ({r.wall_s:.0f} s): {r.notes}")
        lines.extend(f"  - failed Decide calls: {f}" for f in r.failures)
        lines.extend(f"  - VIOLATION: {v}" for v in r.violations)
    return "\n".join(lines) + "\n"


def write_report(
    rows: Sequence[FaultFigures], out_dir: Path, meta: Mapping[str, Any]
) -> tuple[Path, Path]:
    """Write ``resilience.json`` and ``resilience.md`` under ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    faults = [{**dataclasses.asdict(r), "details": dict(r.details)} for r in rows]
    doc = {"meta": dict(meta), "faults": faults}
    json_path = out_dir / "resilience.json"
    json_path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    md_path = out_dir / "resilience.md"
    command = meta.get("command", "")
    head = f"Command: `{command}` — {meta.get('date', '')}\n\n" if command else ""
    md_path.write_text(head + markdown(rows), encoding="utf-8")
    return json_path, md_path

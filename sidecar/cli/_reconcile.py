"""``policy-sidecar reconcile``: print the plan (dry run, the default) or ``--apply`` it.

Runs in this process against the configured registries, a managed (or configured) OPA and the
job store; with ``--apply`` a worker pool runs the queued copies here too, so no sidecar needs to
be serving. Progress goes to stderr, the plan (table or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from sidecar.config import Config
from sidecar.errors import InvalidArgument
from sidecar.reconcile import ApplyReport, Plan
from sidecar.telemetry import Telemetry

__all__ = ["add_parser", "render_table", "run"]


def add_parser(sub: Any) -> None:
    """Add the ``reconcile`` sub-command."""
    rec = sub.add_parser(
        "reconcile",
        help="observe the registries, decide every source image, print the plan (or --apply it)",
    )
    mode = rec.add_mutually_exclusive_group()
    mode.add_argument(
        "--dry-run", action="store_true", default=True, help="only print the plan (the default)"
    )
    mode.add_argument(
        "--apply", action="store_true", help="execute the plan: copies, then removals"
    )
    rec.add_argument("--json", action="store_true", help="print JSON instead of a table")
    rec.add_argument("--quiet", action="store_true", help="no progress on stderr")


class _Progress:
    """Progress lines on stderr, at most a few per second per stage."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._last: dict[str, float] = {}

    def __call__(self, what: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last.get(what, 0.0) < 0.5:
            return
        self._last[what] = now
        self._out.write(f"reconcile: {what}: {done}/{total}\n")
        self._out.flush()


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} B"


def render_table(plan: Plan, report: ApplyReport | None = None) -> str:
    """The plan as an aligned text table with its totals (and what applying it did)."""
    rows = [("KIND", "TARGET", "DIGEST", "SIZE", "NOTE")]
    for a in plan.actions:
        note = a.blocked or ",".join(a.reasons)
        rows.append((a.kind, a.target, a.digest[:19], _size(a.size_bytes), note))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
    counts = ", ".join(f"{k} {n}" for k, n in plan.counts().items())
    lines.append("")
    lines.append(
        f"{plan.images} image(s): {counts}; {_size(plan.bytes_to_copy)} to copy, "
        f"{_size(plan.bytes_freed)} freed; revision {plan.bundle_revision or '-'}"
    )
    if plan.degraded:
        lines.append(f"{plan.degraded} decision(s) degraded (fail mode): they remove nothing")
    for registry, why in sorted(plan.unreadable.items()):
        lines.append(f"unreadable: {registry}: {why}")
    if report is not None:
        failed = [j for j in report.jobs if j.state.value == "failed"]
        lines.append(
            f"applied: {len(report.jobs)} copy job(s) ({len(failed)} failed), "
            f"{len(report.removed)} removed, {len(report.refused)} refused"
        )
        for action, why in report.refused:
            lines.append(f"refused: {action.kind} {action.target}: {why}")
        if report.stopped:
            lines.append(report.stopped)
    return "\n".join(lines)


async def run(args: argparse.Namespace, config: Config) -> tuple[dict[str, Any] | str, bool]:
    """Run one reconcile; return (JSON document or table, whether everything went through)."""
    from sidecar.app.reconcile import reconciler  # noqa: PLC0415 - keeps --help fast

    if not config.policy.reconcile.sources:
        # Before OPA starts: the answer does not need it.
        raise InvalidArgument(
            "policy.reconcile.sources", "names no source registry: nothing to reconcile"
        )
    telemetry = Telemetry(config.policy.telemetry.service_name)
    progress = None if args.quiet else _Progress(sys.stderr)
    try:
        async with reconciler(config, telemetry, run_workers=args.apply) as rec:
            plan, report = await rec.run(dry_run=not args.apply, progress=progress)
    finally:
        telemetry.shutdown()
    ok = report is None or (
        not report.stopped and all(j.state.value == "succeeded" for j in report.jobs)
    )
    if args.json:
        doc: dict[str, Any] = {"dry_run": not args.apply, "plan": plan.to_json()}
        if report is not None:
            doc["applied"] = report.to_json()
        return doc, ok
    return render_table(plan, report), ok

"""``policy-sidecar reconcile``: print the plan (dry run, the default) or ``--apply`` it.

Runs in this process against the configured registries, a managed (or configured) OPA and the
job store; with ``--apply`` a worker pool runs the queued copies here too, so no sidecar needs to
be serving. ``--bundle CANDIDATE`` previews a candidate bundle instead: what it would change
compared with the serving policy (never applied). Progress goes to stderr, the plan or the
impact (table or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TextIO

from sidecar.config import Config
from sidecar.errors import InvalidArgument
from sidecar.reconcile import ApplyReport, Impact, Plan
from sidecar.telemetry import Telemetry

__all__ = ["add_parser", "render_impact", "render_table", "run"]


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
    rec.add_argument(
        "--bundle", metavar="CANDIDATE",
        help="impact preview: what this signed bundle (.tar.gz) would change, compared with the "
        "configured policy; evaluated on a spare OPA, never applied",
    )  # fmt: skip
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


def render_impact(impact: Impact) -> str:
    """A preview's impact as a diff table (image, kind, target, before → after) with totals."""
    rows = [("IMAGE", "KIND", "TARGET", "BEFORE → AFTER", "SIZE")]
    for c in impact.changes:
        rows.append(
            (c.image or "-", c.kind, c.target, f"{c.before} → {c.after}", _size(c.size_bytes))
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
        for row in rows
    ]
    t = impact.totals()
    lines.append("")
    lines.append(
        f"{t['images']} image(s), {t['images_changed']} changed, {t['routes_changed']} with "
        f"other routes: copies +{t['copy_added']} -{t['copy_dropped']}, removals "
        f"+{t['removal_added']} -{t['removal_dropped']}, routes +{t['route_added']} "
        f"-{t['route_dropped']}, other {t['changed']}"
    )
    lines.append(
        f"to copy {_size(t['bytes_to_copy_before'])} → {_size(t['bytes_to_copy_after'])}, "
        f"freed {_size(t['bytes_freed_before'])} → {_size(t['bytes_freed_after'])}; revision "
        f"{impact.before_revision or '-'} → {impact.after_revision or '-'}"
    )
    lines.append("preview: nothing was applied")
    return "\n".join(lines)


def _read_candidate(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as exc:
        raise InvalidArgument("--bundle", f"cannot read {path}: {exc}") from exc
    if len(raw) > limit:
        raise InvalidArgument(
            "--bundle", f"{path} is over policy.admin.max_bundle_bytes ({limit} bytes)"
        )
    return raw


async def run(args: argparse.Namespace, config: Config) -> tuple[dict[str, Any] | str, bool]:
    """Run one reconcile; return (JSON document or table, whether everything went through)."""
    from sidecar.app.reconcile import reconciler  # noqa: PLC0415 - keeps --help fast

    if not config.policy.reconcile.sources:
        # Before OPA starts: the answer does not need it.
        raise InvalidArgument(
            "policy.reconcile.sources", "names no source registry: nothing to reconcile"
        )
    candidate = None
    if args.bundle:
        if args.apply:
            raise InvalidArgument("--bundle", "a preview never applies: drop --apply")
        candidate = _read_candidate(args.bundle, config.policy.admin.max_bundle_bytes)
    telemetry = Telemetry(config.policy.telemetry.service_name)
    progress = None if args.quiet else _Progress(sys.stderr)
    if candidate is not None:
        try:
            async with reconciler(config, telemetry) as rec:
                preview = await rec.preview(candidate, progress=progress)
        finally:
            telemetry.shutdown()
        if args.json:
            return {
                "dry_run": True,
                "preview": True,
                "impact": preview.impact.to_json(),
                "plan": preview.after.to_json(),
            }, True
        return render_impact(preview.impact), True
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

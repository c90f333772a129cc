"""``policy-sidecar replicate`` and ``policy-sidecar jobs``: talk to a running sidecar over gRPC.

Copies run inside the sidecar (its worker pool owns the durable jobs); the CLI asks for them and
watches them, so interrupting the CLI never interrupts a copy. ``jobs --events`` lists the webhook
inbox from the configured job store itself (``policy.replication.store``), no server needed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import grpc
from google.protobuf.json_format import MessageToDict

from sidecar._proto import policy_pb2 as pb
from sidecar._proto import policy_pb2_grpc as pb_grpc
from sidecar.api.status import error_code_of
from sidecar.cli._channel import caller_subject, data_plane_channel
from sidecar.config import Config, job_store_url
from sidecar.errors import ErrorCode, InvalidArgument, NotFound, SidecarError
from sidecar.model.decision import ImageRef
from sidecar.model.jobs import InboxEvent

__all__ = ["add_parsers", "run_events", "run_jobs", "run_replicate"]

_CALLER_HELP = "caller subject (default: cli; with $POLICY_SIDECAR_TOKEN: the token's identity)"

_TERMINAL = frozenset({"succeeded", "failed", "skipped"})
_BAR = 24


def add_parsers(sub: Any) -> None:
    """Add the ``replicate`` and ``jobs`` sub-commands to the CLI's sub-parser set."""
    rep = sub.add_parser("replicate", help="decide, then copy an image to every routed registry")
    rep.add_argument("image", metavar="IMAGE", help="REGISTRY/REPOSITORY[:TAG][@DIGEST]")
    rep.add_argument("--label", action="append", default=[], metavar="K=V", help="image label")
    rep.add_argument("--dry-run", action="store_true", help="report what would be copied only")
    rep.add_argument("--no-wait", action="store_true", help="return once the jobs are queued")
    rep.add_argument("--caller", default=None, help=_CALLER_HELP)
    rep.add_argument("--caller-tenant", default=None, help="caller tenant id")
    rep.add_argument(
        "--server", metavar="HOST:PORT", help="sidecar address (default: policy.listen)"
    )
    jobs = sub.add_parser("jobs", help="list, show or watch replication jobs")
    jobs.add_argument("job_id", nargs="?", help="show this job (with --watch: follow it)")
    jobs.add_argument("--state", help="only jobs in this state (queued|running|failed|...)")
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (newest first)")
    jobs.add_argument("--watch", action="store_true", help="follow JOB_ID until it finishes")
    jobs.add_argument("--json", action="store_true", help="print JSON instead of a table")
    jobs.add_argument(
        "--events",
        action="store_true",
        help="list webhook inbox events not yet processed (pending, retrying, dead) from the "
        "job store (policy.replication.store); no server needed",
    )
    jobs.add_argument(
        "--server", metavar="HOST:PORT", help="sidecar address (default: policy.listen)"
    )


def _address(args: argparse.Namespace, config: Config) -> str:
    return str(args.server or config.policy.listen)


def _error(exc: grpc.aio.AioRpcError, server: str) -> SidecarError:
    code, details = exc.code(), exc.details() or ""
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        field, _, problem = details.partition(": ")
        return InvalidArgument(field, problem or details)
    if code == grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code == grpc.StatusCode.UNAVAILABLE and "connect" in details.lower():
        return SidecarError(f"no sidecar answering at {server} (start one: policy-sidecar serve)")
    err = SidecarError(f"{server}: {code.name}: {details}")
    # The code the status's ErrorInfo names (unauthenticated, policy_unavailable, ...), not a guess.
    err.code = error_code_of(exc) or ErrorCode.INTERNAL
    return err


def _line(job: pb.Job) -> str:
    total, done = job.bytes_total, job.bytes_done
    share = done / total if total else (1.0 if job.state in ("succeeded", "skipped") else 0.0)
    filled = int(share * _BAR)
    bar = "#" * filled + "." * (_BAR - filled)
    size = f"{done / 1e6:7.1f}/{total / 1e6:.1f} MB" if total else " " * 10
    blobs = f"{job.blobs_done}/{job.blobs_total} blobs" if job.blobs_total else ""
    tail = f"  {job.error}" if job.error else ""
    return f"[{bar}] {share:4.0%} {size} {blobs:>10}  {job.state:<9} {job.destination}{tail}"


class _Progress:
    """Renders one line per job: redrawn in place on a terminal, printed on change otherwise."""

    def __init__(self, out: TextIO, jobs: Sequence[pb.Job]) -> None:
        self._out = out
        self._jobs = {j.job_id: j for j in jobs}
        self._tty = out.isatty()
        self._drawn = 0
        self._printed: dict[str, str] = {}

    def update(self, job: pb.Job) -> None:
        self._jobs[job.job_id] = job
        if self._tty:
            if self._drawn:
                self._out.write(f"\x1b[{self._drawn}F")
            for item in self._jobs.values():
                self._out.write("\x1b[2K" + _line(item) + "\n")
            self._drawn = len(self._jobs)
        elif self._printed.get(job.job_id) != job.state:
            # Logs and CI get one line per state change, not a redraw per progress tick.
            self._printed[job.job_id] = job.state
            self._out.write(_line(job) + "\n")
        self._out.flush()


async def _follow(stub: pb_grpc.PolicyServiceStub, jobs: Sequence[pb.Job]) -> list[pb.Job]:
    progress = _Progress(sys.stderr, jobs)
    for job in jobs:
        progress.update(job)

    async def one(job: pb.Job) -> pb.Job:
        last = job
        async for update in stub.WatchJob(pb.GetJobRequest(job_id=job.job_id)):
            last = update
            progress.update(update)
        return last

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def _as_dict(msg: Any) -> dict[str, Any]:
    return MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


async def run_replicate(
    args: argparse.Namespace, config: Config, labels: dict[str, str]
) -> tuple[dict[str, Any], bool]:
    """Run ``replicate``; return the JSON report and whether every job succeeded (or was skipped)."""
    try:
        ref = ImageRef.parse(args.image)
    except ValueError as exc:
        raise InvalidArgument("IMAGE", str(exc)) from exc
    server = _address(args, config)
    request = pb.ReplicateRequest(
        request=pb.DecideRequest(
            image=pb.Image(
                registry=ref.registry,
                repository=ref.repository,
                tag=ref.tag,
                digest=ref.digest,
                labels=labels,
            ),
            event="manual",
            caller=pb.Caller(subject=caller_subject(args.caller), tenant=args.caller_tenant or ""),
        ),
        dry_run=args.dry_run,
    )
    async with data_plane_channel(server) as channel:
        stub = pb_grpc.PolicyServiceStub(channel)
        try:
            answer = await stub.Replicate(request, timeout=60)
            jobs = list(answer.jobs)
            if jobs and not args.no_wait:
                jobs = await _follow(stub, jobs)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, server) from exc
    ok = all(j.state in ("succeeded", "skipped") for j in jobs) or args.no_wait
    report = {"decision": _as_dict(answer.decision), "jobs": [_as_dict(j) for j in jobs]}
    return report, ok


def _table(jobs: Sequence[pb.Job]) -> str:
    rows = [("JOB", "KIND", "STATE", "PRIO", "PROGRESS", "MOVED", "DESTINATION", "SOURCE")]
    for j in jobs:
        done = f"{j.bytes_done / 1e6:.1f}/{j.bytes_total / 1e6:.1f} MB" if j.bytes_total else "-"
        # What the copy itself transferred: 0 when every blob was already at the destination.
        moved = f"{j.bytes_moved / 1e6:.1f} MB" if j.state == "succeeded" else "-"
        kind = (j.kind or "copy") + (" (dry run)" if j.dry_run else "")
        rows.append(
            (j.job_id, kind, j.state, str(j.priority), done, moved, j.destination, j.source)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


def _events_table(events: Sequence[InboxEvent]) -> str:
    rows = [("EVENT", "STATE", "ATTEMPTS", "RECEIVED", "NEXT ATTEMPT", "LAST ERROR")]
    for e in events:
        rows.append(
            (
                e.event_id,
                e.state,
                str(e.attempts),
                e.received_at,
                e.next_attempt_at if e.state == "retrying" else "-",
                e.last_error or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def run_events(args: argparse.Namespace, config: Config) -> str:
    """Run ``jobs --events``: the webhook inbox, read from the job store; a table or JSON text."""
    import json  # noqa: PLC0415

    from sidecar.store import open_job_store  # noqa: PLC0415 - keeps `--help` instant

    if args.job_id or args.watch or args.state:
        raise InvalidArgument("--events", "lists the inbox only: no JOB_ID, --watch or --state")
    store = await open_job_store(
        job_store_url(config.policy.replication, str(config.policy.state_dir))
    )
    try:
        events = await store.inbox_events(limit=max(1, args.limit))
    finally:
        await store.close()
    if args.json:
        return json.dumps([e.to_json() for e in events], indent=2)
    return _events_table(events)


async def run_jobs(args: argparse.Namespace, config: Config) -> str:
    """Run ``jobs``; return what to print (a table or JSON text)."""
    import json  # noqa: PLC0415

    if args.events:
        return await run_events(args, config)
    server = _address(args, config)
    async with data_plane_channel(server) as channel:
        stub = pb_grpc.PolicyServiceStub(channel)
        try:
            if args.job_id:
                job = await stub.GetJob(pb.GetJobRequest(job_id=args.job_id), timeout=10)
                if args.watch and job.state not in _TERMINAL:
                    job = (await _follow(stub, [job]))[0]
                jobs = [job]
            else:
                answer = await stub.ListJobs(
                    pb.ListJobsRequest(state=args.state or "", limit=args.limit), timeout=10
                )
                jobs = list(answer.jobs)
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, server) from exc
    if args.json or args.job_id:
        doc: Any = _as_dict(jobs[0]) if args.job_id else [_as_dict(j) for j in jobs]
        return json.dumps(doc, indent=2)
    return _table(jobs)

"""``policy-sidecar audit verify|list``: check and read the audit log in the configured job store."""

from __future__ import annotations

import argparse
from typing import Any

from sidecar.config import Config, job_store_url

__all__ = ["add_parser", "run"]


def add_parser(sub: Any) -> None:
    """Add ``audit verify|list`` to the CLI's subcommands."""
    audit = sub.add_parser(
        "audit", help="verify or list the hash-chained audit log (policy.replication.store)"
    )
    asub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = asub.add_parser(
        "verify", help="check every record's hash and link; exit 1 naming each break"
    )
    verify.add_argument(
        "--anchor",
        action="append",
        default=[],
        type=_anchor,
        metavar="SEQ:HASH",
        help="a record's hash kept outside the database (audit_seq and audit_hash of an "
        "'audit event' log line); catches a rewritten log whose chain was recomputed; repeatable",
    )
    listing = asub.add_parser("list", help="print audit records as JSON, newest first")
    listing.add_argument("--limit", type=int, default=50, help="records to print (default 50)")
    listing.add_argument("--tenant", help="only records touching this tenant")
    listing.add_argument("--before-seq", type=int, default=0, help="only records before this seq")


async def run(args: argparse.Namespace, config: Config) -> tuple[dict[str, Any], bool]:
    """Run one audit action; return its JSON report and whether it succeeded."""
    from sidecar.audit import open_audit_log  # noqa: PLC0415 - keeps `--help` instant

    url = job_store_url(config.policy.replication, str(config.policy.state_dir))
    log = await open_audit_log(url)
    try:
        if args.audit_command == "verify":
            result = await log.verify(dict(args.anchor))
            return result.to_json(), result.ok
        records = await log.list(
            limit=max(1, args.limit), tenant=args.tenant, before_seq=args.before_seq
        )
        return {"records": [r.to_json() for r in records]}, True
    finally:
        await log.close()


def _anchor(text: str) -> tuple[int, str]:
    seq, colon, digest = text.partition(":")
    digest = digest.strip().lower()
    if (
        not colon
        or not seq.strip().isdigit()
        or len(digest) != 64
        or any(c not in "0123456789abcdef" for c in digest)
    ):
        raise argparse.ArgumentTypeError(
            f"expected SEQ:HASH (a record number and its 64-hex sha256), got {text!r}"
        )
    return int(seq), digest

"""Audit records and the hash that chains them.

Each record's hash covers its content and the previous record's hash, so editing, reordering or
deleting any record breaks the chain from that record on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

__all__ = ["GENESIS_HASH", "OUTCOMES", "AuditEvent", "AuditRecord", "chain_hash"]

# The prev_hash of record 1: a fixed value, so the first record is chained like any other.
GENESIS_HASH = "0" * 64

OUTCOMES = (
    "published",  # a bundle went to the store / the managed OPA
    "rolled_back",  # a previous revision was published again
    "rejected",  # a bundle failed validation: detail lists every problem
    "denied",  # data.system.authz refused the caller
    "unauthenticated",  # no, unknown or expired token; untrusted or expired certificate
    "failed",  # the store or OPA failed the operation; nothing changed
    # OPA began serving a revision no PolicyAdmin call published (`bundle publish --to`, another
    # replica's own store, an external OPA's operator): seen by the sidecar, never missed.
    "activated",
    # The reconciler deleted a copy the policy's `remove` or retention asked for (DESIGN §3.4).
    "removed",
    "rate_limited",  # the caller went over policy.admin.rate_limit; nothing was done
    # One row standing for many refusals of one caller in one window (policy.admin.audit_refusals):
    # detail says how many, of which action and outcome, between which times.
    "suppressed",
)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, before it is numbered and chained: who did what, to which revision."""

    actor: str
    action: str
    outcome: str
    old_revision: str = ""
    new_revision: str = ""
    digest: str = ""
    changed_files: tuple[str, ...] = ()
    tenants: tuple[str, ...] = ()
    detail: str = ""

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"audit outcome must be one of {OUTCOMES}, not {self.outcome!r}")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit event: its place in the log (``seq``, from 1), time and chain hashes."""

    seq: int
    at: str
    event: AuditEvent
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        """Return the record as a JSON-ready dict (what ``audit list`` prints)."""
        return {"seq": self.seq, "at": self.at, **_content(self.event),
                "prev_hash": self.prev_hash, "hash": self.hash}  # fmt: skip


def chain_hash(seq: int, at: str, event: AuditEvent, prev_hash: str) -> str:
    """Return the hex SHA-256 of the record's canonical JSON, which includes ``prev_hash``."""
    body = {"seq": seq, "at": at, **_content(event), "prev_hash": prev_hash}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _content(event: AuditEvent) -> dict[str, Any]:
    return {
        "actor": event.actor,
        "action": event.action,
        "outcome": event.outcome,
        "old_revision": event.old_revision,
        "new_revision": event.new_revision,
        "digest": event.digest,
        "changed_files": list(event.changed_files),
        "tenants": list(event.tenants),
        "detail": event.detail,
    }

"""The audit trail of policy changes: append-only, hash-chained records in the job store."""

from __future__ import annotations

from sidecar.audit.record import GENESIS_HASH, OUTCOMES, AuditEvent, AuditRecord, chain_hash
from sidecar.audit.refusals import REFUSAL_OUTCOMES, RefusalAudit, RefusalWindow
from sidecar.audit.store import AuditLog, Verification, open_audit_log
from sidecar.audit.trail import ACTIONS, AuditTrail

__all__ = [
    "ACTIONS",
    "GENESIS_HASH",
    "OUTCOMES",
    "REFUSAL_OUTCOMES",
    "AuditEvent",
    "AuditLog",
    "AuditRecord",
    "AuditTrail",
    "RefusalAudit",
    "RefusalWindow",
    "Verification",
    "chain_hash",
    "open_audit_log",
]
